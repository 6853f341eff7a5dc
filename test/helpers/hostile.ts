/**
 * Shared scaffolding of the hostile-input tests (test/hostile-*.test.ts): running a check
 * under a time limit, classifying what happened, and the small files they start from.
 *
 * Every hostile or corrupted input must end in a clean TensorizeError (with a code, and a
 * message that names the file and, where it matters, the tensor and byte offset), never
 * another exception type, a hang or a huge allocation.
 *
 * Speed: a StreamPool worker thread takes ~2 s to start under tap's TypeScript loader, and
 * verifyFile starts a fresh pool per call, so the bulk loops (thousands of truncated and
 * bit-flipped files) use verifyFile with the pool swapped (t.mockImport with POOL_MOCK, from
 * helpers/pool.ts) for an in-process one that runs the very same runJob(). t.mockImport
 * resolves paths from the file that calls it, so each test file does its own:
 *   const { verifyFile } = await t.mockImport<typeof import('../src/ops/verify.js')>('../src/ops/verify.js', POOL_MOCK);
 * and hands the functions it got to the helpers here. The real worker pool is exercised by
 * the "real worker pool" subtests, which pass the unmocked verifyFile.
 */
import type { Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TensorizeError } from '../../src/errors.js';
import { TensorType } from '../../src/format/constants.js';
import { TensorizerFile, type TensorEntry } from '../../src/format/reader.js';
import type { verifyFile, VerifyResult } from '../../src/ops/verify.js';
import type { writeTensorizer } from '../../src/ops/serialize.js';
import { openInput } from '../../src/inputs/index.js';
import { FileSource } from '../../src/sources/file.js';
import { u64 } from './tensors-builder.js';

type VerifyFn = typeof verifyFile;
type WriteFn = typeof writeTensorizer;

// ---------------------------------------------------------------------------------------
// Running a check and classifying what happened.

export type Outcome = { kind: 'ok'; r: VerifyResult } | { kind: 'error'; e: unknown } | { kind: 'hang' };

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'hang'> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<'hang'>((res) => {
    timer = setTimeout(() => res('hang'), ms);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Open `path` and verify it with `verify` (the test's mocked verifyFile, or the real one). */
export async function verifyPath(path: string, verify: VerifyFn, ms = 10_000): Promise<Outcome> {
  const run = async (): Promise<Outcome> => {
    let src: FileSource | undefined;
    try {
      src = await FileSource.open(path);
      return { kind: 'ok', r: await verify(src, { threads: 1 }) };
    } catch (e) {
      return { kind: 'error', e };
    } finally {
      await src?.close();
    }
  };
  const o = await withTimeout(run(), ms);
  return o === 'hang' ? { kind: 'hang' } : o;
}

/** Open `path` as an input model (safetensors here). */
export async function inputOutcome(path: string, ms = 10_000): Promise<{ kind: 'ok'; m: Awaited<ReturnType<typeof openInput>> } | { kind: 'error'; e: unknown } | { kind: 'hang' }> {
  const o = await withTimeout(
    openInput(path).then(
      (m) => ({ kind: 'ok' as const, m }),
      (e: unknown) => ({ kind: 'error' as const, e }),
    ),
    ms,
  );
  return o === 'hang' ? { kind: 'hang' } : o;
}

/** One line saying what happened, for assertion messages. */
export function describe(o: { kind: string; e?: unknown; r?: VerifyResult; m?: unknown }): string {
  if (o.kind === 'hang') return 'HANG';
  const r = o.r;
  if (o.kind === 'ok') return `OK ${JSON.stringify(r ? { ok: r.ok, failures: r.failures.map((f) => `${f.tensor}/${f.hash}`), warnings: r.warnings } : 'opened')}`;
  const e = o.e as Error & { code?: string };
  return e instanceof TensorizeError ? `TensorizeError ${e.code}: ${e.message}` : `NOT A TensorizeError (${e?.constructor?.name}): ${e?.message ?? String(e)}`;
}

export interface ErrExpect {
  codes: string[];
  file: string;
  /** A distinctive word or phrase saying what is wrong. */
  word?: RegExp;
  tensor?: string;
  offset?: number | bigint;
}

/** Returns a list of problems (empty when the outcome is the expected clean error). */
export function errorProblems(o: { kind: string; e?: unknown }, x: ErrExpect): string[] {
  if (o.kind !== 'error') return [`expected a TensorizeError, got ${describe(o)}`];
  const e = o.e;
  if (!(e instanceof TensorizeError)) return [`expected a TensorizeError, got ${describe(o)}`];
  const p: string[] = [];
  if (!x.codes.includes(e.code)) p.push(`code ${e.code} is not one of ${x.codes.join('/')}: ${e.message}`);
  if (!e.message.includes(x.file)) p.push(`message does not name the file: ${e.message}`);
  if (x.word && !x.word.test(e.message)) p.push(`message does not match ${x.word}: ${e.message}`);
  if (x.tensor !== undefined && !e.message.includes(JSON.stringify(x.tensor))) p.push(`message does not name tensor ${JSON.stringify(x.tensor)}: ${e.message}`);
  if (x.offset !== undefined && !new RegExp(`\\bbytes? ${x.offset}\\b`).test(e.message)) p.push(`message does not give byte ${x.offset}: ${e.message}`);
  return p;
}

/** One assertion: the outcome is the expected clean error. */
export function expectError(tt: Test, o: { kind: string; e?: unknown }, x: ErrExpect, msg: string): void {
  tt.same(errorProblems(o, x), [], msg);
}

// ---------------------------------------------------------------------------------------
// Files to start from, and where things are in them.

/** A safetensors file by hand: any header text (or object), any data, any header length. */
export function safetensors(header: string | Buffer | object, data: Buffer | number = 0, lenOverride?: bigint): Buffer {
  const json = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const d = typeof data === 'number' ? Buffer.alloc(data) : data;
  return Buffer.concat([u64(lenOverride ?? BigInt(json.length)), json, d]);
}

/**
 * The compact file, in `dir`: written by our writer (`write`, the test's writeTensorizer)
 * from a hand-made safetensors file of five small tensors (one empty, one bfloat16, one
 * scalar), no trailer. `long`: with a sixth, empty tensor of shape [2^32, 0] after the
 * first, which makes it data version 5 (tagged index entries, docs/format.md §4.1).
 */
export async function compact(dir: string, write: WriteFn, opts: { long?: boolean } = {}): Promise<{ path: string; buf: Buffer }> {
  const stem = opts.long ? 'compact-v5' : 'compact';
  const st = join(dir, `${stem}.safetensors`);
  const data = Buffer.alloc(24 + 10 + 8 + 1);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + 11) & 0xff;
  writeFileSync(
    st,
    safetensors(
      {
        __metadata__: { format: 'pt' },
        a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
        ...(opts.long ? { long: { dtype: 'I16', shape: [2 ** 32, 0], data_offsets: [24, 24] } } : {}),
        e: { dtype: 'F32', shape: [0, 4], data_offsets: [24, 24] },
        'b.weight': { dtype: 'I16', shape: [5], data_offsets: [24, 34] },
        c: { dtype: 'BF16', shape: [2, 2], data_offsets: [34, 42] },
        s: { dtype: 'U8', shape: [], data_offsets: [42, 43] },
      },
      data,
    ),
  );
  const model = await openInput(st);
  const path = join(dir, `${stem}.tensors`);
  await write(
    path,
    model.tensors.map((x) => ({ path: x.path, type: TensorType.PARAM, dtype: x.dtype, shape: x.shape, data: x.data })),
    { threads: 1, trailer: false },
  );
  return { path, buf: readFileSync(path) };
}

/** The index of an intact file: its entries and data version. */
export async function structure(path: string): Promise<{ entries: TensorEntry[]; version: number }> {
  const src = await FileSource.open(path);
  try {
    const tf = await TensorizerFile.open(src);
    return { entries: tf.entries, version: tf.info.version };
  } finally {
    await src.close();
  }
}

