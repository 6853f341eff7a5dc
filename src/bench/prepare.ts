/**
 * The file `tensorize bench` measures: a synthetic model made on the spot (no source), a
 * local input converted to .tensors first (safetensors, PyTorch, a directory), a local
 * .tensors file as is, or an http(s):// / s3:// URL as is. Making and converting use the
 * same code as `tensorize serialize` (the native copy engine), and the result is verified.
 */
import { mkdir, open, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { TensorizeError } from '../errors.js';
import { MAGIC, TensorType } from '../format/constants.js';
import { isSafetensorsHead } from '../inputs/safetensors-header.js';
import { closeCheckpoint, isMultiFile, openSafetensorsCheckpoint } from '../inputs/safetensors-checkpoint.js';
import { exportSafetensors } from '../ops/export.js';
import { verifyFile } from '../ops/verify.js';
import { DEFAULT_ALIGN } from '../format/encode.js';
import { writeTensorizer, type WriteSummary } from '../ops/serialize.js';
import { openInput } from '../inputs/index.js';
import { FileSource, fsError } from '../sources/file.js';
import { sourceKind } from '../sources/open.js';
import { writeSyntheticSafetensors } from '../ops/synthetic.js';
import { TempDir } from '../util/tempfile.js';
import { formatBytes, gbps } from '../util/units.js';
import { DEFAULT_BENCH_SIZE, type BenchSourceKind } from './types.js';

export interface Step {
  what: 'make' | 'serialize' | 'verify';
  seconds: number;
  bytes: number;
}

export interface MadeModel {
  safetensors: string;
  tensors: string;
  tensorCount: number;
  dataBytes: number;
  version: number;
  hashesChecked: number;
  steps: Step[];
}

const since = (t: number) => (performance.now() - t) / 1000;
const rate = (bytes: number, s: number) => `${gbps(bytes, s).toFixed(2)} GB/s`;

/** Serialize `input` (anything `tensorize serialize` reads) to `out` and verify every hash. */
export async function serializeAndVerify(input: string, out: string, log: (line: string) => void, steps: Step[] = []): Promise<{ summary: WriteSummary; hashesChecked: number; steps: Step[] }> {
  let t = performance.now();
  const model = await openInput(input);
  const summary = await writeTensorizer(
    out,
    model.tensors.map((x) => ({ path: x.path, type: TensorType.STATE_DICT, dtype: x.dtype, shape: x.shape, data: x.data })),
    { align: DEFAULT_ALIGN },
  );
  const serS = since(t);
  steps.push({ what: 'serialize', seconds: serS, bytes: summary.dataBytes });
  log(`serialized to ${out}: ${formatBytes(summary.dataBytes)} in ${serS.toFixed(2)} s (${rate(summary.dataBytes, serS)}), data version ${summary.version}`);
  t = performance.now();
  const src = await FileSource.open(out);
  const v = await verifyFile(src).finally(() => src.close());
  const verS = since(t);
  steps.push({ what: 'verify', seconds: verS, bytes: v.dataBytes });
  if (!v.ok) throw new TensorizeError('E_HASH_MISMATCH', `${out}: verification failed`);
  log(`verified ${v.hashesChecked} hashes in ${verS.toFixed(2)} s (${rate(v.dataBytes, verS)})`);
  return { summary, hashesChecked: v.hashesChecked, steps };
}

/** Write a synthetic bf16 transformer of about `size` bytes into `dir`, serialize it and verify it. */
export async function makeSyntheticModel(dir: string, size: number, log: (line: string) => void): Promise<MadeModel> {
  const safetensors = join(dir, 'model.safetensors');
  const tensors = join(dir, 'model.tensors');
  const t = performance.now();
  const specs = await writeSyntheticSafetensors(safetensors, size);
  const makeS = since(t);
  const steps: Step[] = [{ what: 'make', seconds: makeS, bytes: size }];
  log(`made ${safetensors}: ${specs.length} bf16 tensors in ${makeS.toFixed(2)} s`);
  const { summary, hashesChecked } = await serializeAndVerify(safetensors, tensors, log, steps);
  return { safetensors, tensors, tensorCount: summary.tensors, dataBytes: summary.dataBytes, version: summary.version, hashesChecked, steps };
}

/**
 * A directory for the files: `dir` (created, kept) or a new temporary one, removed by
 * cleanup() and, on every other way out (Ctrl-C, SIGTERM, a closed pipe, a crash), by the
 * exit hook of util/tempfile.ts: after an interrupt has stopped the native threads.
 */
export async function workDir(dir: string | undefined, prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  if (dir) {
    await mkdir(dir, { recursive: true });
    return { dir: resolve(dir), cleanup: async () => {} };
  }
  const tmp = await TempDir.create(prefix);
  return { dir: tmp.path, cleanup: () => tmp.remove() };
}

export interface PreparedSource {
  kind: BenchSourceKind;
  /** What the user gave (a path or URL), or `synthetic <size>`. */
  input: string;
  /** The .tensors file (or URL) to benchmark. */
  file: string;
  /** Also kept: the synthetic model's safetensors file. */
  safetensors?: string;
  /** A local safetensors checkpoint converted into `file`: it, and its files (see BenchOptions.direct). */
  direct?: { input: string; files: string[] };
  steps: Step[];
  /** Remove what was made in a temporary directory. */
  cleanup: () => Promise<void>;
}

/** A regular file that starts as a safetensors file does. */
async function looksLikeSafetensors(path: string): Promise<boolean> {
  const st = await stat(path).catch((e: unknown) => Promise.reject(fsError(e, path)));
  if (!st.isFile()) return false;
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(9);
    const { bytesRead } = await fh.read(head, 0, 9, 0);
    return isSafetensorsHead(head.subarray(0, bytesRead), st.size);
  } finally {
    await fh.close();
  }
}

async function isTensorizerFile(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(MAGIC.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.equals(MAGIC);
  } finally {
    await fh.close();
  }
}

/** The files of a local safetensors checkpoint (one file, an index, a directory), or undefined when `source` is not one. */
async function safetensorsFiles(source: string): Promise<string[] | undefined> {
  let c;
  if (await isMultiFile(source)) {
    c = await openSafetensorsCheckpoint(source).catch(() => undefined); // e.g. a PyTorch directory
  } else if (await looksLikeSafetensors(source)) {
    const src = await FileSource.open(source);
    c = await openSafetensorsCheckpoint(source, { first: { source: src, head: await src.read(0, 9) } });
  }
  if (!c) return undefined;
  await closeCheckpoint(c);
  return c.shards.map((x) => resolve(x.name));
}

/** Turn the bench's source argument (or none) into a .tensors file or URL to measure. */
export async function prepareBenchSource(source: string | undefined, opts: { size?: number; dir?: string; log?: (line: string) => void }): Promise<PreparedSource> {
  const log = opts.log ?? (() => {});
  if (source === undefined) {
    const size = opts.size ?? DEFAULT_BENCH_SIZE;
    const w = await workDir(opts.dir, 'tensorize-bench-');
    try {
      log(`no source given: making a ${formatBytes(size)} synthetic bf16 transformer in ${w.dir}`);
      const m = await makeSyntheticModel(w.dir, size, log);
      return { kind: 'synthetic', input: 'synthetic bf16 transformer', file: m.tensors, safetensors: m.safetensors, steps: m.steps, cleanup: w.cleanup };
    } catch (e) {
      await w.cleanup();
      throw e;
    }
  }
  const kind = sourceKind(source);
  if (kind !== 'file') return { kind, input: source, file: source, steps: [], cleanup: async () => {} };
  let st;
  try {
    st = await stat(source);
  } catch (e) {
    throw fsError(e, source);
  }
  if (st.isFile() && (await isTensorizerFile(source))) return { kind: 'tensors', input: source, file: source, steps: [], cleanup: async () => {} };
  const w = await workDir(opts.dir, 'tensorize-bench-');
  try {
    const out = join(w.dir, 'model.tensors');
    log(`${source} is not a .tensors file: converting it first (tensorize loads .tensors files; the naive baseline reads the same file)`);
    const { steps } = await serializeAndVerify(source, out, log);
    const files = await safetensorsFiles(source);
    return { kind: 'converted', input: source, file: out, steps, cleanup: w.cleanup, ...(files ? { direct: { input: source, files } } : {}) };
  } catch (e) {
    await w.cleanup();
    throw e;
  }
}

/**
 * The same tensors as .safetensors, for the peers that read only that format: `given`
 * (--safetensors), else the synthetic model's or the source itself when it is one
 * .safetensors file, else (a local .tensors file, a converted PyTorch or sharded input)
 * exported from the .tensors file into a temporary directory beside it (the same file
 * system, so the peers read from the same disk; the system's temporary directory where
 * that cannot be written), which `prepared.cleanup()` then removes too: a user's files are
 * never written over. For a URL without `given`: none, and why.
 */
export async function safetensorsForm(prepared: PreparedSource, opts: { given?: string; log?: (line: string) => void }): Promise<{ file?: string; why?: string }> {
  if (opts.given) {
    if (sourceKind(opts.given) !== 'file') return { file: opts.given };
    if (!(await looksLikeSafetensors(opts.given))) throw new TensorizeError('E_USAGE', `--safetensors ${opts.given} is not a .safetensors file (it must hold the same tensors as the source, in safetensors form)`);
    return { file: resolve(opts.given) };
  }
  if (prepared.safetensors) return { file: prepared.safetensors };
  if (prepared.kind === 'converted' && /\.safetensors$/i.test(prepared.input) && (await stat(prepared.input)).isFile()) return { file: resolve(prepared.input) };
  if (prepared.kind === 'http' || prepared.kind === 's3') {
    return { why: `no .safetensors of the same tensors at a URL: pass --safetensors ${prepared.kind === 's3' ? 's3://' : 'https://'}... (bench does not write into a remote store)` };
  }
  const w = await TempDir.create('.tensorize-bench-', dirname(resolve(prepared.file))).catch(() => TempDir.create('tensorize-bench-'));
  const out = join(w.path, 'model.safetensors');
  const t = performance.now();
  const src = await FileSource.open(prepared.file);
  try {
    const s = await exportSafetensors(src, out, { verify: false });
    opts.log?.(`wrote the same tensors as ${out} for the peers that read .safetensors: ${formatBytes(s.dataBytes)} in ${since(t).toFixed(2)} s`);
  } catch (e) {
    await w.remove();
    return { why: `the .tensors file cannot be written as .safetensors for them: ${(e as Error).message}` };
  } finally {
    await src.close();
  }
  const before = prepared.cleanup;
  prepared.cleanup = async () => {
    await before();
    await w.remove();
  };
  return { file: out };
}
