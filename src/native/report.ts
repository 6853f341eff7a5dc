/**
 * What the native addon was built with and what it finds on this machine at run time:
 * `tensorize doctor` prints it, and the library exports it as nativeInfo(). Never throws:
 * an addon that cannot load is reported with the error and its fixes.
 */
import os from 'node:os';
import { config } from '../config.js';
import { TensorizeError } from '../errors.js';
import { freePageReporting, hugePagesByDefault } from '../util/memory.js';
import { ADDON_PATH, native, type DeviceBackend, type NativeDevice, type NativeInfo } from './binding.js';

export interface NativeReport {
  /** The addon file looked for (TENSORIZE_NATIVE overrides it). */
  addonPath: string;
  /** It loaded; when not, `error` says why and `hints` how to fix it. */
  available: boolean;
  error?: { code: string; message: string };
  hints: string[];
  /** Which backend the device layer runs: the NVIDIA driver, the simulator, or none. */
  backend?: DeviceBackend;
  /** The CUDA version the driver supports, as `major.minor` (absent without a driver). */
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
 * Why no GPU is usable, in words (undefined when one is): the cause the user can act on, as
 * the device layer found it (no NVIDIA driver found, a driver too old for a call tensorize
 * needs, no device, ...).
 */
export function noDeviceReason(i: NativeInfo): string | undefined {
  if (i.deviceCount > 0) return undefined;
  return i.noDeviceReason || 'no CUDA device found';
}

/** What to do when the addon finds no usable GPU (empty when it found one). */
export function noDeviceHints(i: NativeInfo): string[] {
  if (i.deviceCount > 0) return [];
  const why = i.noDeviceReason;
  const hints: string[] = [];
  if (/no NVIDIA driver found/.test(why)) hints.push('install the NVIDIA driver (it brings libcuda.so.1); nvidia-smi should list the GPU');
  else if (/too old/.test(why)) hints.push('update the NVIDIA driver');
  else if (/fabric manager|SystemNotReady|SYSTEM_NOT_READY/i.test(why)) hints.push('an HGX/NVSwitch system needs nvidia-fabricmanager running before its GPUs can be used');
  else if (/TENSORIZE_SIM_GPU/.test(why)) hints.push('set TENSORIZE_SIM_GPU to a number of simulated devices (1 to 16), or unset it');
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
  const addonPath = config().nativePath ?? ADDON_PATH;
  let bin;
  try {
    bin = native();
  } catch (e) {
    const err = e instanceof TensorizeError ? e : new TensorizeError('E_NATIVE_UNAVAILABLE', String(e));
    return { addonPath, available: false, error: { code: err.code, message: err.message }, hints: err.hints, devices: [], host };
  }
  const i = bin.info();
  const hints = noDeviceHints(i);
  return {
    addonPath,
    available: true,
    hints,
    backend: i.backend,
    cudaDriver: i.driverVersion > 0 ? cudaVersionString(i.driverVersion) : undefined,
    devices: i.devices,
    noDeviceReason: noDeviceReason(i),
    hashImplementation: i.hashImplementation,
    populate: i.populate,
    host,
  };
}
