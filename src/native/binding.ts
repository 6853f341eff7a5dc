/**
 * The typed wrapper around the native addon, and the only module that loads it. Loading
 * is lazy: commands that do not stream into memory never touch it. When it cannot load,
 * one error lists the concrete fixes (sharp style); native errors arrive as TensorizeError
 * instances with a stable .code (better-sqlite3 style).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { TensorizeError } from '../errors.js';

export interface NativeDevice {
  index: number;
  name: string;
  totalMemory: number;
  pciBusId: string;
}

export interface NativeInfo {
  compiledWithCuda: boolean;
  cudaToolkit: string;
  cudaRuntimeVersion: number;
  driverVersion: number;
  deviceCount: number;
  /** Why there is no device, when there is none. */
  cudaError: string;
  devices: NativeDevice[];
  verifyAvailable: boolean;
}

export interface NativeExpect {
  crc32?: number;
  sha256?: Buffer;
  prefix: Buffer;
}

export interface NativeSpec {
  path: string;
  /** -1 for host memory. */
  device: number;
  plaid: boolean;
  readers: number;
  chunkSize: number;
  verify: boolean;
  /** Size of the destination allocation. */
  total: number;
  /** The size the file had when its index was read. */
  fileSize?: number;
  /** (file offset, length, destination offset) triples. */
  items: Float64Array;
  expect?: NativeExpect[];
}

export interface NativeStats {
  allocMs: number;
  firstTensorMs: number;
  transferMs: number;
  bytes: number;
  pinnedBytes: number;
  deviceBytes: number;
  hostBytes: number;
  pieces: number;
}

declare const handleBrand: unique symbol;
export type NativeHandle = { readonly [handleBrand]: true };

export interface NativeBinding {
  info(): NativeInfo;
  start(spec: NativeSpec): { handle: NativeHandle; done: Promise<NativeStats> };
  progress(h: NativeHandle): number;
  cancel(h: NativeHandle): void;
  read(h: NativeHandle, offset: number, length: number): Buffer;
  free(h: NativeHandle): void;
  probeH2D(device: number, bytes: number, iterations: number): number;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const ADDON_PATH = `${ROOT}native/build/Release/tensorize_native.node`;

let cached: NativeBinding | undefined;

/** Load the addon (once). Throws E_NATIVE_UNAVAILABLE with the fixes when it cannot. */
export function native(): NativeBinding {
  if (cached) return cached;
  const path = process.env.TENSORIZE_NATIVE ?? ADDON_PATH;
  const hints = [
    'build it: npm run build:native (needs cmake >= 3.18 and a C++17 compiler: apt-get install cmake g++)',
    'for GPU loads, install the CUDA toolkit (nvcc, cudart) before building; without it a host-only addon is built',
    'or point TENSORIZE_NATIVE at a tensorize_native.node built for this platform',
  ];
  if (!existsSync(path)) {
    throw new TensorizeError('E_NATIVE_UNAVAILABLE', `the native loader is not built (${path} does not exist)`, { hints });
  }
  try {
    const b = createRequire(import.meta.url)(path) as NativeBinding & { init(cls: unknown): void };
    b.init(TensorizeError);
    cached = b;
    return b;
  } catch (e) {
    throw new TensorizeError('E_NATIVE_UNAVAILABLE', `the native loader at ${path} cannot be loaded: ${(e as Error).message}`, {
      hints: ['rebuild it for this machine: npm run build:native', ...hints.slice(1)],
      cause: e,
    });
  }
}

/** Whether the addon can load, without throwing. */
export function nativeAvailable(): boolean {
  try {
    native();
    return true;
  } catch {
    return false;
  }
}
