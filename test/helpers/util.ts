/** Helpers shared by tests: vector locations, a tiny safetensors writer, hashing. */
import { reloadConfig } from '../../src/config.js';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The reference vectors: $TENSORIZE_VECTORS, else ../shared/vectors beside the checkout,
 * else beside the repository this one was cloned from (a fresh local clone elsewhere).
 */
function findVectors(): string {
  const candidates = [process.env.TENSORIZE_VECTORS, join(ROOT, '..', 'shared', 'vectors')];
  try {
    const origin = execFileSync('git', ['-C', ROOT, 'remote', 'get-url', 'origin'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (isAbsolute(origin)) candidates.push(join(origin, '..', 'shared', 'vectors'));
  } catch {
    // not a git checkout, or no origin
  }
  const found = candidates.find((c) => c !== undefined && existsSync(join(c, 'INDEX.json')));
  return `${found ?? candidates[1]!}/`;
}
export const VECTORS = findVectors();
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

/**
 * Run the CLI asynchronously (tests that serve files from this process would deadlock a
 * synchronous spawn): exit code, stdout and stderr.
 */
export async function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  return { code, stdout, stderr };
}

/** Set (or, with undefined, unset) an environment variable in this process and have tensorize read its configuration again. */
export function setEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  reloadConfig();
}
