/**
 * What the native addon was built with and what it finds on this machine at run time:
 * `tensorize doctor` prints it, and the library exports it as nativeInfo(). Never throws:
 * an addon that cannot load is reported with the error and its fixes.
 */
import os from 'node:os';
import { TensorizeError } from '../errors.js';
import { freePageReporting, hugePagesByDefault } from '../util/memory.js';
import { ADDON_PATH, native, type NativeDevice, type NativeInfo } from './binding.js';

export interface NativeReport {
  /** The addon file looked for (TENSORIZE_NATIVE overrides it). */
  addonPath: string;
  /** It loaded; when not, `error` says why and `hints` how to fix it. */
  available: boolean;
  error?: { code: string; message: string };
  hints: string[];
  compiledWithCuda: boolean;
  /** The CUDA toolkit the addon was compiled with, e.g. `13.0`. */
  cudaToolkit?: string;
  /** The CUDA runtime linked in and the driver found, as `major.minor` (0 when none). */
  cudaRuntime?: string;
  cudaDriver?: string;
  devices: NativeDevice[];
  /** Why no GPU is usable, when none is. */
  noDeviceReason?: string;
  /** What CRC32 and SHA-256 run on, e.g. `sha-ni x2, vpclmul`. */
  hashImplementation?: string;
  /** MADV_POPULATE_READ/WRITE work (Linux >= 5.14): --mmap maps pages in bulk, copies prefault. */
  populate?: boolean;
  host: {
    platform: string;
    arch: string;
    kernel: string;
    cpus: number;
    cpuModel: string;
    memoryBytes: number;
    node: string;
    /** A VM balloon that hands free memory back to its host (huge pages then load slowly). */
    freePageReporting: boolean;
    /** Whether host-memory loads ask for transparent huge pages (TENSORIZE_HUGEPAGES decides when set). */
    hugePages: boolean;
  };
}

/** `13000` -> `13.0` (CUDA's encoding: 1000 x major + 10 x minor). */
export function cudaVersionString(v: number): string {
  return v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : '0';
}

/**
 * Why no GPU is usable, in words (undefined when one is): the cause the user can act on,
 * not the CUDA error it surfaced as (a missing driver reads "cudaErrorInsufficientDriver").
 */
export function noDeviceReason(i: NativeInfo): string | undefined {
  if (i.deviceCount > 0) return undefined;
  if (!i.compiledWithCuda) return 'the native addon was built without CUDA';
  if (i.driverVersion === 0) return 'no NVIDIA driver found (libcuda.so.1 is not installed)';
  if (i.driverVersion < i.cudaRuntimeVersion) {
    return `the NVIDIA driver supports CUDA ${cudaVersionString(i.driverVersion)}, older than the CUDA ${cudaVersionString(i.cudaRuntimeVersion)} the addon was built with`;
  }
  return i.cudaError || 'no CUDA device found';
}

/** What to do when the addon finds no usable GPU (empty when it found one). */
export function noDeviceHints(i: NativeInfo): string[] {
  if (i.deviceCount > 0) return [];
  if (!i.compiledWithCuda) return ['GPU loads need an addon built with CUDA: install the CUDA toolkit (nvcc, cudart), then npm run build:native', 'or load into host memory with --device cpu (or --mmap)'];
  const runtime = cudaVersionString(i.cudaRuntimeVersion);
  const hints: string[] = [];
  if (i.driverVersion === 0) hints.push('no NVIDIA driver was found (libcuda.so.1): install one; nvidia-smi should list the GPU');
  else if (i.driverVersion < i.cudaRuntimeVersion) {
    const driver = cudaVersionString(i.driverVersion);
    hints.push(`the driver supports CUDA ${driver}, the addon was built with CUDA ${runtime}: update the driver (CUDA 13 needs >= 580), or rebuild the addon with a CUDA <= ${driver} toolkit: CUDAToolkit_ROOT=/usr/local/cuda-${driver} npm run build:native`);
  } else if (/SystemNotReady/.test(i.cudaError)) hints.push('an HGX/NVSwitch system needs nvidia-fabricmanager running before its GPUs can be used');
  hints.push('or load into host memory with --device cpu (or --mmap)');
  return hints;
}

export function nativeInfo(): NativeReport {
  const host = {
    platform: process.platform,
    arch: process.arch,
    kernel: os.release(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryBytes: os.totalmem(),
    node: process.version,
    freePageReporting: freePageReporting(),
    hugePages: hugePagesByDefault(),
  };
  const addonPath = process.env.TENSORIZE_NATIVE ?? ADDON_PATH;
  let bin;
  try {
    bin = native();
  } catch (e) {
    const err = e instanceof TensorizeError ? e : new TensorizeError('E_NATIVE_UNAVAILABLE', String(e));
    return { addonPath, available: false, error: { code: err.code, message: err.message }, hints: err.hints, compiledWithCuda: false, devices: [], host };
  }
  const i = bin.info();
  const hints = noDeviceHints(i);
  return {
    addonPath,
    available: true,
    hints,
    compiledWithCuda: i.compiledWithCuda,
    cudaToolkit: i.cudaToolkit || undefined,
    cudaRuntime: i.compiledWithCuda ? cudaVersionString(i.cudaRuntimeVersion) : undefined,
    cudaDriver: i.compiledWithCuda ? cudaVersionString(i.driverVersion) : undefined,
    devices: i.devices,
    noDeviceReason: noDeviceReason(i),
    hashImplementation: i.hashImplementation,
    populate: i.populate,
    host,
  };
}
