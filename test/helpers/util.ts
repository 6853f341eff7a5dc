/** Helpers shared by tests: vector locations, a tiny safetensors writer, hashing. */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const VECTORS = fileURLToPath(new URL('../../../shared/vectors/', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = fileURLToPath(new URL('../../bin/tensorize.js', import.meta.url));

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export interface StTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Buffer;
}

/** Write a safetensors file by hand (what the safetensors library writes, minus key sorting). */
export function writeSafetensors(path: string, tensors: StTensor[], metadata?: Record<string, string>): void {
  let pos = 0;
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.data.length] };
    pos += t.data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), ...tensors.map((t) => t.data)]));
}

/** Deterministic pseudo-random bytes. */
export function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}
