/**
 * What the native addon was built with and what it finds on this machine at run time:
 * `tensorize doctor` prints it, and the library exports it as nativeInfo(). Never throws:
 * an addon that cannot load is reported with the error and its fixes.
 */
import os from 'node:os';
import { TensorizeError } from '../errors.js';
import { freePageReporting, hugePagesByDefault } from '../util/memory.js';
import { ADDON_PATH, native, type NativeDevice } from './binding.js';

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
  const hints: string[] = [];
  if (!i.compiledWithCuda) hints.push('GPU loads need an addon built with CUDA: install the CUDA toolkit (nvcc, cudart), then npm run build:native');
  else if (i.deviceCount === 0) {
    if (/InsufficientDriver|NoDevice|driver/i.test(i.cudaError)) hints.push('no usable NVIDIA driver: install one that supports CUDA ' + cudaVersionString(i.cudaRuntimeVersion) + ' (nvidia-smi should list the GPU)');
    hints.push('host-memory loads (--device cpu, --mmap) work without a GPU');
  }
  return {
    addonPath,
    available: true,
    hints,
    compiledWithCuda: i.compiledWithCuda,
    cudaToolkit: i.cudaToolkit || undefined,
    cudaRuntime: i.compiledWithCuda ? cudaVersionString(i.cudaRuntimeVersion) : undefined,
    cudaDriver: i.compiledWithCuda ? cudaVersionString(i.driverVersion) : undefined,
    devices: i.devices,
    noDeviceReason: i.deviceCount > 0 ? undefined : i.compiledWithCuda ? i.cudaError || 'no CUDA device found' : 'the addon was built without CUDA',
    hashImplementation: i.hashImplementation,
    host,
  };
}
