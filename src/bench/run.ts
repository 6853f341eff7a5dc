/**
 * `runBench()`: load benchmarks of one .tensors file, side by side, with the machine's
 * ceilings measured in the same run.
 *
 * - Methods: tensorize --plaid, tensorize --mmap (local files into host memory), tensorize
 *   without --plaid, and a naive baseline (read the whole file into memory, then copy); callers may add more (the peer script adds
 *   tensorizer and safetensors).
 * - Ceilings: the raw read of the file (`readers` threads, and one thread), or for remote
 *   sources a plain parallel download; on a GPU also the pinned host-to-device copy. The
 *   ceiling a load is held against is the slower of reading (see readCeiling) and copying.
 * - Every method and read probe runs `runs` times, interleaved (round-robin, each round
 *   starting one method later), each run in a fresh child process (own peak RSS, no
 *   shared heap or CUDA state); median, min and max are reported.
 * - Warm cache: one untimed read of the file first, and the page-cache residency checked
 *   before every run. Cold cache: the file is evicted (fdatasync + posix_fadvise
 *   DONTNEED) before every run, and residency checked to show whether that worked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { formatBytes } from '../util/units.js';
import { TensorizeError } from '../errors.js';
import { TensorizerFile } from '../format/reader.js';
import { DEFAULT_CHUNK, DEFAULT_READERS, parseDevice } from '../loader/load.js';
import { native, type NativeInfo } from '../native/binding.js';
import { noDeviceReason } from '../native/report.js';
import { FileSource } from '../sources/file.js';
import { openSource, sourceKind, type SourceKind, type SourceOptions } from '../sources/open.js';
import { onInterrupt } from '../util/interrupt.js';
import { freePageReporting, hugePagesByDefault } from '../util/memory.js';
import { pageCacheResidency } from './cache.js';
import { formatRate, spreadOf, STEADY_SPREAD } from './report.js';
import { H2D_PROBE_BYTES, H2D_PROBE_ITERATIONS, REMOTE_RANGE, type MethodId, type Sample, type Task, type TaskId } from './measure.js';

export const METHOD_IDS: readonly MethodId[] = ['plaid', 'mmap', 'simple', 'naive'];
export const DEFAULT_RUNS = 5;
/** The synthetic model's size when bench is given no source. */
export const DEFAULT_BENCH_SIZE = 2 ** 30;
export const DEFAULT_CONCURRENCY = 8;
/** Eviction "worked" when at most this fraction of the file's pages is still cached. */
export const EVICTION_TOLERANCE = 0.02;

/** A method measured by the caller's own code (e.g. a peer loader in another language). */
export interface ExtraMethod {
  id: string;
  label: string;
  command?: string;
  /** The local file it reads, when not the benchmarked one (evicted or warmed like it). */
  file?: string;
  /** One timed run onto `device` (`cpu` or `cuda:N`); the bench handles the page cache before each call. */
  run(device: string): Promise<Sample>;
}

export interface BenchOptions {
  /** A local .tensors path, or an http(s):// or s3:// URL of one. */
  file: string;
  /** `cpu`, `cuda` or `cuda:N` (default: cuda:0 when a GPU is usable, else cpu). */
  device?: string;
  runs?: number;
  /** Evict the file from the page cache before every run (local files). */
  cold?: boolean;
  /** Reader threads of --plaid and of the parallel read probe (default 8). */
  readers?: number;
  /** Chunk size of --plaid and the read probes (default 16 MiB). */
  chunkSize?: number;
  /** Remote sources: range requests in flight (default 8). */
  concurrency?: number;
  source?: SourceOptions;
  /** Default: all of METHOD_IDS. */
  methods?: readonly MethodId[];
  extraMethods?: readonly ExtraMethod[];
  /** What the user asked to benchmark, when the file was made or converted from it. */
  origin?: { kind: BenchSourceKind; input: string };
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
}

export type BenchSourceKind = 'synthetic' | 'converted' | 'tensors' | 'http' | 's3';

export interface Summary {
  median: number;
  min: number;
  max: number;
}

export interface BenchEntry {
  id: string;
  role: 'ceiling' | 'method' | 'peer';
  label: string;
  /** The equivalent command, where there is one. */
  command?: string;
  samples: Sample[];
  gbPerSecond: Summary;
  seconds: Summary;
  firstTensorMs?: Summary;
  /** Largest peak RSS over the runs (of the child process that ran it). */
  peakRssBytes?: number;
  /** Median GB/s over the ceiling's median GB/s. */
  fractionOfCeiling?: number;
}

export interface CacheReport {
  mode: 'warm' | 'cold';
  /** False for remote sources: their bytes do not come from this machine's page cache. */
  applies: boolean;
  /** Cold: whether every eviction left at most EVICTION_TOLERANCE of the pages cached. */
  evicted?: boolean;
  /** Cold: the largest fraction of the file still cached right after an eviction. */
  maxResidentAfterEviction?: number;
  /** Warm: the smallest fraction of the file cached before a run. */
  minResidentBeforeRun?: number;
  message: string;
}

export interface BenchResult {
  ok: true;
  schema: 'tensorize-bench/1';
  tool: string;
  date: string;
  machine: { cpus: number; cpuModel: string; memoryBytes: number; os: string; arch: string; node: string };
  source: { kind: BenchSourceKind; input: string; file: string; fileBytes: number; tensorBytes: number; tensors: number; filesystem?: string };
  device: { target: string; gpu: boolean; name: string; description: string };
  cache: CacheReport;
  runs: number;
  settings: { readers: number; chunkSize: number; concurrency?: number };
  ceilings: BenchEntry[];
  /** `reason`: why this ceiling was chosen (see readCeiling). */
  ceiling: { id: string; label: string; gbPerSecond: number; reason?: string };
  methods: BenchEntry[];
  skipped: { id: string; label: string; reason: string }[];
  notes: string[];
}

export function summarize(xs: readonly number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { median: 0, min: 0, max: 0 };
  const median = n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, min: s[0]!, max: s[n - 1]! };
}

const FS_TYPES: Record<number, string> = {
  0xef53: 'ext4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x01021994: 'tmpfs',
  0x858458f6: 'ramfs',
  0x794c7630: 'overlayfs',
  0x6969: 'nfs',
  0x65735546: 'fuse',
  0x2fc12fc1: 'zfs',
  0xff534d42: 'cifs',
  0x0bd00bd0: 'lustre',
  0xf2f52010: 'f2fs',
};
const UNEVICTABLE_FS = new Set(['tmpfs', 'ramfs']);

export function filesystemOf(path: string): string | undefined {
  try {
    const t = Number(statfsSync(path).type);
    return FS_TYPES[t] ?? `0x${t.toString(16)}`;
  } catch {
    return undefined;
  }
}

export function toolVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };
    return `tensorize ${pkg.version}`;
  } catch {
    return 'tensorize';
  }
}

/** The child entry point: dist/bench/child.js (also when this module runs from src/ under a TypeScript loader). */
function childScript(): string {
  for (const rel of ['./child.js', '../../dist/bench/child.js']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new TensorizeError('E_IO', 'the benchmark child script (dist/bench/child.js) is missing', { hints: ['build the CLI: npm run build'] });
}

let running: ChildProcess | undefined;
let exitHooked = false;

/** Run one task in a fresh Node process and return its sample. */
export async function runTask(task: Task): Promise<Sample> {
  if (!exitHooked) {
    // Whatever ends this process (an error, a closed pipe, a signal) ends the run in flight too.
    exitHooked = true;
    process.on('exit', () => running?.kill('SIGKILL'));
  }
  const child = spawn(process.execPath, [childScript()], { stdio: ['pipe', 'pipe', 'pipe'] });
  running = child;
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdin.end(JSON.stringify(task));
  const status = await new Promise<number | string>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? signal ?? -1));
  }).finally(() => {
    if (running === child) running = undefined;
  });
  const last = out.trim().split('\n').pop() ?? '';
  let doc: { ok: boolean; sample?: Sample; error?: { code: string; message: string; hints?: string[] } } | undefined;
  try {
    doc = JSON.parse(last) as typeof doc;
  } catch {
    doc = undefined;
  }
  if (doc?.ok && doc.sample) return doc.sample;
  if (child.killed) throw new TensorizeError('E_INTERRUPTED', 'interrupted');
  if (doc?.error) throw new TensorizeError(doc.error.code as TensorizeError['code'], doc.error.message, { hints: doc.error.hints });
  throw new TensorizeError('E_IO', `the benchmark process for ${task.id} ended with ${typeof status === 'number' ? `exit code ${status}` : status}${err.trim() ? `: ${err.trim().split('\n').slice(-5).join(' / ')}` : ''}`);
}

function describeDevice(requested: string | undefined, index: number, info: NativeInfo): BenchResult['device'] {
  if (index >= 0) {
    const d = info.devices[index];
    const name = d?.name ?? `cuda:${index}`;
    const mem = d ? `, ${(d.totalMemory / 2 ** 30).toFixed(0)} GiB` : '';
    if (info.backend === 'simulated') {
      return { target: `cuda:${index}`, gpu: true, name, description: `SIMULATED GPU: cuda:${index} (${name}${mem}, TENSORIZE_SIM_GPU): a CPU stand-in with a modelled copy bandwidth; these figures say nothing about a real GPU` };
    }
    return { target: `cuda:${index}`, gpu: true, name, description: `GPU: cuda:${index} (${name}${mem}): benchmarking loads into GPU memory` };
  }
  if (requested === 'cpu') return { target: 'cpu', gpu: false, name: 'host memory', description: 'CPU: --device cpu given: benchmarking loads into host memory' };
  const why = noDeviceReason(info) ?? 'no CUDA device';
  return { target: 'cpu', gpu: false, name: 'host memory', description: `CPU: no usable GPU (${why}): benchmarking loads into host memory` };
}

/** Where a bench loads from and into, as far as which methods can run. */
export interface MethodScope {
  /** An http(s):// or s3:// source. */
  remote: boolean;
  /** Loads go to a GPU (`target`). */
  gpu: boolean;
  target: string;
}

/** Why `method` cannot run for this source and destination, or undefined when it can. */
export function methodUnfit(method: MethodId, scope: MethodScope): string | undefined {
  if (method === 'mmap') {
    if (scope.remote) return 'it maps local files only';
    if (scope.gpu) return `it loads into host memory only, and this bench loads onto ${scope.target}`;
  }
  return undefined;
}

/**
 * Methods asked for by name must run: one that cannot run for this source or destination
 * is a usage error saying why and which methods apply (methods not asked for are skipped
 * with the reason instead).
 */
export function checkMethods(requested: readonly MethodId[] | undefined, scope: MethodScope): void {
  const bad = (requested ?? []).flatMap((m) => {
    const why = methodUnfit(m, scope);
    return why ? [{ m, why }] : [];
  });
  if (bad.length === 0) return;
  const apply = METHOD_IDS.filter((m) => !methodUnfit(m, scope));
  const where = scope.remote ? 'an http(s):// or s3:// source' : `loads onto ${scope.target}`;
  throw new TensorizeError('E_USAGE', `--methods ${bad.map((b) => `${b.m}: --${b.m} cannot run here: ${b.why}`).join('; ')}. Methods that apply to ${where}: ${apply.join(', ')}`, {
    hints: [scope.remote ? `drop ${bad.map((b) => b.m).join(', ')} from --methods` : `add --device cpu to benchmark loads into host memory, or drop ${bad.map((b) => b.m).join(', ')} from --methods`],
  });
}

/** The device a bench loads onto: `requested`, else cuda:0 when a GPU is usable, else host memory. */
export function benchDevice(requested: string | undefined): BenchResult['device'] {
  const info = native().info();
  return describeDevice(requested, parseDevice(requested, () => info), info);
}

const pct = (f: number) => `${(f * 100).toFixed(f < 0.1 && f > 0 ? 1 : 0)}%`;

function sizeLabel(n: number): string {
  return n % 2 ** 20 === 0 ? `${n / 2 ** 20} MiB` : n % 2 ** 10 === 0 ? `${n / 2 ** 10} KiB` : `${n} B`;
}

interface Planned {
  id: string;
  file?: string;
  role: BenchEntry['role'];
  label: string;
  short: string;
  command?: string;
  run: () => Promise<Sample>;
  samples: Sample[];
}

/** Benchmark loading one .tensors file; see the module comment. */
export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const log = opts.log ?? (() => {});
  const file = opts.file;
  const kind: SourceKind = sourceKind(file);
  const remote = kind !== 'file';
  const runs = opts.runs ?? DEFAULT_RUNS;
  if (!Number.isInteger(runs) || runs < 1) throw new TensorizeError('E_USAGE', 'runs must be a positive integer');
  const readers = opts.readers ?? DEFAULT_READERS;
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK;
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  const bin = native();
  const device = benchDevice(opts.device);
  checkMethods(opts.methods, { remote, gpu: device.gpu, target: device.target });

  // The index: what there is to load (and a clear error when this is not a .tensors file).
  const src = remote ? await openSource(file, opts.source) : await FileSource.open(file);
  let tensors = 0;
  let tensorBytes = 0;
  const fileBytes = src.size;
  try {
    const tf = await TensorizerFile.open(src);
    for (const e of tf.entries) {
      if (e.dataLength === 0) continue;
      tensors++;
      tensorBytes += e.dataLength;
    }
  } finally {
    await src.close();
  }
  if (tensorBytes === 0) throw new TensorizeError('E_INPUT', `${file} holds no tensor data to load`);
  const filesystem = remote ? undefined : filesystemOf(file);

  // What runs: the ceiling probes, then the methods.
  const source = remote ? plainSourceOptions(opts.source) : undefined;
  const task = (id: TaskId): Task => ({ id, file, device: device.target, readers, chunkSize, concurrency, source });
  const planned: Planned[] = [];
  const add = (id: string, role: Planned['role'], label: string, short: string, command: string | undefined, run: () => Promise<Sample>) =>
    planned.push({ id, role, label, short, command, run, samples: [] });
  const target = device.gpu ? ` --device ${device.target}` : ' --device cpu';
  if (remote) {
    add('download', 'ceiling', `raw download, ${concurrency} x ${sizeLabel(REMOTE_RANGE)} ranges in flight`, 'download', undefined, () => runTask(task('download')));
  } else {
    add('read-parallel', 'ceiling', `raw read, ${readers} threads x ${sizeLabel(chunkSize)} preads`, `read x${readers}`, undefined, () => runTask(task('read-parallel')));
    add('read-sequential', 'ceiling', `raw read, 1 thread, ${sizeLabel(chunkSize)} preads`, 'read x1', undefined, () => runTask(task('read-sequential')));
  }
  const methods = opts.methods ?? METHOD_IDS;
  const skipped: BenchResult['skipped'] = [];
  const q = /^[\w./:@-]+$/.test(file) ? file : `'${file.replace(/'/g, `'\\''`)}'`;
  const how = remote ? `${concurrency} ranges in flight` : `${readers} readers, ${sizeLabel(chunkSize)} chunks`;
  for (const m of METHOD_IDS.filter((x) => methods.includes(x))) {
    if (m === 'plaid') add('plaid', 'method', `tensorize --plaid (${how})`, 'plaid', `tensorize load ${q} --plaid${target}`, () => runTask(task('plaid')));
    if (m === 'mmap') {
      const label = 'tensorize --mmap (file pages mapped copy-on-write, no copy)';
      const reason = methodUnfit('mmap', { remote, gpu: device.gpu, target: device.target });
      if (reason) {
        skipped.push({ id: 'mmap', label, reason });
        log(`skipping --mmap: ${reason}`);
      } else add('mmap', 'method', label, 'mmap', `tensorize load ${q} --mmap`, () => runTask(task('mmap')));
    }
    if (m === 'simple') add('simple', 'method', remote ? `tensorize, no --plaid (${how})` : 'tensorize, no --plaid (read each tensor, then copy)', 'simple', `tensorize load ${q}${target}`, () => runTask(task('simple')));
    if (m === 'naive') {
      const label = remote ? 'naive: download whole object, then copy' : 'naive: read whole file, then copy';
      const need = fileBytes + (device.gpu ? 0 : tensorBytes);
      if (need > 0.9 * os.totalmem()) {
        const reason = `it needs ${(need / 1e9).toFixed(1)} GB of RAM (the whole file${device.gpu ? '' : ' plus the host destination'}) and the machine has ${(os.totalmem() / 1e9).toFixed(1)} GB`;
        skipped.push({ id: 'naive', label, reason });
        log(`skipping the naive baseline: ${reason}`);
      } else add('naive', 'method', label, 'naive', undefined, () => runTask(task('naive')));
    }
  }
  for (const x of opts.extraMethods ?? []) {
    add(x.id, 'peer', x.label, x.id, x.command, () => x.run(device.target));
    planned[planned.length - 1]!.file = x.file;
  }

  const unhook = onInterrupt(async () => {
    running?.kill('SIGKILL');
  });
  try {
    // The pinned host-to-device ceiling does not depend on the file: measured once.
    let h2d: Planned | undefined;
    if (device.gpu) {
      h2d = { id: 'h2d', role: 'ceiling', label: `pinned host-to-device copy (${sizeLabel(H2D_PROBE_BYTES)}, best of ${H2D_PROBE_ITERATIONS})`, short: 'h2d', run: () => runTask(task('h2d')), samples: [] };
      log(`measuring the pinned host-to-device copy bandwidth of ${device.target}`);
      h2d.samples.push(await h2d.run());
    }

    const vmNote = freePageReporting()
      ? `This VM hands free memory back to its host (virtio-balloon free page reporting): a fresh process often waits for the host to back its memory again, so loads into host memory vary with what ran just before; tensorize therefore ${hugePagesByDefault() ? 'still uses huge pages (TENSORIZE_HUGEPAGES=1)' : 'does not ask for huge pages here'} (see docs/benchmarks.md).`
      : undefined;
    if (vmNote) log(`note: ${vmNote}`);
    const cache = remote ? undefined : { evictions: [] as number[], before: [] as number[] };
    if (!remote && !opts.cold) {
      log('warming the page cache: one untimed read of the file');
      for (const f of new Set([file, ...planned.map((p) => p.file ?? file)])) await bin.readProbe(f, readers, chunkSize);
    }
    log(`${runs} run${runs > 1 ? 's' : ''} of each, interleaved, each in a fresh process${opts.cold && !remote ? ', the file evicted from the page cache before each' : ''}`);
    for (let r = 0; r < runs; r++) {
      const order = planned.map((_, k) => planned[(k + r) % planned.length]!);
      for (const p of order) {
        let before: number | undefined;
        if (cache) {
          const f = p.file ?? file;
          if (opts.cold) bin.evictFile(f);
          before = pageCacheResidency(f);
          (opts.cold ? cache.evictions : cache.before).push(before);
        }
        const s = await p.run().catch((e: unknown) => {
          const err = e instanceof TensorizeError ? e : new TensorizeError('E_IO', (e as Error)?.message ?? String(e));
          throw new TensorizeError(err.code, `${p.label}, run ${r + 1}: ${err.message}`, { hints: err.hints, cause: e });
        });
        if (before !== undefined) s.residentBefore = before;
        p.samples.push(s);
      }
      log(`  run ${r + 1}/${runs}: ${planned.map((p) => `${p.short} ${formatRate(p.samples[r]!.gbPerSecond)}`).join(', ')} GB/s`);
    }

    const entry = (p: Planned): BenchEntry => {
      const e: BenchEntry = {
        id: p.id,
        role: p.role,
        label: p.label,
        ...(p.command ? { command: p.command } : {}),
        samples: p.samples,
        gbPerSecond: summarize(p.samples.map((s) => s.gbPerSecond)),
        seconds: summarize(p.samples.map((s) => s.seconds)),
      };
      const first = p.samples.map((s) => s.firstTensorMs).filter((x): x is number => x !== undefined && x >= 0);
      if (first.length) e.firstTensorMs = summarize(first);
      const rss = p.samples.map((s) => s.peakRssBytes).filter((x): x is number => x !== undefined);
      if (rss.length) e.peakRssBytes = Math.max(...rss);
      return e;
    };
    const ceilings = [...planned.filter((p) => p.role === 'ceiling'), ...(h2d ? [h2d] : [])].map(entry);
    // The read ceiling (see readCeiling); on a GPU, the slower of that and the link.
    const pick = readCeiling(ceilings.filter((c) => c.id !== 'h2d'));
    const read = pick.read;
    const link = ceilings.find((c) => c.id === 'h2d');
    const binding = link && link.gbPerSecond.median < read.gbPerSecond.median ? link : read;
    const reason = binding === link ? `the pinned host-to-device copy: slower than reading the file (${pick.reason}, ${formatRate(read.gbPerSecond.median)} GB/s)` : pick.reason;
    const ceiling = { id: binding.id, label: binding.label, gbPerSecond: binding.gbPerSecond.median, reason };
    const all = [...ceilings, ...planned.filter((p) => p.role !== 'ceiling').map(entry)];
    for (const e of all) if (ceiling.gbPerSecond > 0) e.fractionOfCeiling = e.gbPerSecond.median / ceiling.gbPerSecond;

    const base = summarize(all.flatMap((e) => e.samples.map((x) => x.baseRssBytes ?? 0)).filter((x) => x > 0)).median;
    const cacheReport = describeCache(opts.cold ?? false, remote, cache, filesystem);
    const notes = [
      'GB/s: 10^9 bytes of tensor data per second of the whole load (open, index, allocation, transfer, until the last tensor is in place); ceilings: bytes of the file per second.',
      `Each method ran ${runs} time${runs > 1 ? 's' : ''}, interleaved with the others, each run in a fresh Node process: median, min and max. Peak RSS is that process's, ${formatBytes(base)} of it before the run started (Node, modules${device.gpu ? ', the CUDA context' : ''})${device.gpu ? '' : '; host loads include their destination'}.`,
      `Ceiling: ${ceiling.label}, ${formatRate(ceiling.gbPerSecond)} GB/s: ${reason}; "of ceiling" is a method's median over it.${remote ? '' : ` The read ceiling is the parallel raw read (what --plaid does, with the same readers and chunk size); the 1-thread read replaces it only when its median is higher and its runs are steady (spread no more than ${STEADY_SPREAD * 100}% of its median).`}`,
      ...pick.notes,
    ];
    const spread = spreadOf(binding.gbPerSecond);
    if (binding.samples.length > 1 && spread > STEADY_SPREAD) {
      notes.push(`The ceiling's own runs spread from ${formatRate(binding.gbPerSecond.min)} to ${formatRate(binding.gbPerSecond.max)} GB/s (${Math.round(spread * 100)}% of its median): the fractions of it are rough; more --runs, or a quieter machine, narrow it.`);
    }
    if (vmNote) notes.push(vmNote);
    if (planned.some((p) => p.id === 'mmap')) {
      notes.push(
        `--mmap copies nothing: it maps the file's pages from the page cache into the process${opts.cold ? ', reading from disk only what is not cached' : ''}, so with the file cached it is page-table work and can exceed 100% of the ceiling, which is a read that copies every byte into a buffer. The pages stay the page cache's (they count in its peak RSS, as file-backed pages, without being new memory); a tensor written to is copied then, page by page.`,
      );
    }
    return {
      ok: true,
      schema: 'tensorize-bench/1',
      tool: toolVersion(),
      date: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
        memoryBytes: os.totalmem(),
        os: `${os.type()} ${os.release()}`,
        arch: os.arch(),
        node: process.version,
      },
      source: { kind: opts.origin?.kind ?? (remote ? kind : 'tensors'), input: opts.origin?.input ?? file, file, fileBytes, tensorBytes, tensors, ...(filesystem ? { filesystem } : {}) },
      device,
      cache: cacheReport,
      runs,
      settings: { readers, chunkSize, ...(remote ? { concurrency } : {}) },
      ceilings,
      ceiling,
      methods: all.filter((e) => e.role !== 'ceiling'),
      skipped,
      notes,
    };
  } finally {
    unhook();
  }
}

/**
 * The read ceiling: the parallel raw read, which reads the file the way --plaid does (the
 * same readers and chunk size). The 1-thread read replaces it only when its median is
 * higher and its runs are steady: on a shared VM a 1-thread read's runs were seen to
 * spread from 1.15 to 11.5 GB/s, and the median of a few such runs must not set the bar
 * every method is held against. Remote sources have one probe, the raw download.
 */
/** Runs needed before a 1-thread read that beats the parallel one may be the ceiling. */
export const MIN_STEADY_RUNS = 3;

export function readCeiling(reads: readonly BenchEntry[]): { read: BenchEntry; reason: string; notes: string[] } {
  const par = reads.find((c) => c.id === 'read-parallel');
  const seq = reads.find((c) => c.id === 'read-sequential');
  if (!par || !seq) {
    const only = par ?? seq ?? reads[0]!;
    return { read: only, reason: only.id === 'download' ? 'the raw download of the object' : 'the raw read of the file', notes: [] };
  }
  const g = seq.gbPerSecond;
  if (g.median > par.gbPerSecond.median) {
    // Steadiness needs runs to judge it by: with fewer than three, the parallel read stands.
    if (seq.samples.length < MIN_STEADY_RUNS) {
      return {
        read: par,
        reason: `the parallel raw read; the 1-thread read was faster, but ${seq.samples.length} run${seq.samples.length === 1 ? ' does' : 's do'} not show it steady`,
        notes: [],
      };
    }
    if (spreadOf(g) <= STEADY_SPREAD) return { read: seq, reason: 'the 1-thread raw read: faster than the parallel one here, and steady', notes: [] };
    return {
      read: par,
      reason: 'the parallel raw read; the 1-thread read had a higher median, but too unsteady runs to be the ceiling',
      notes: [`The 1-thread read's median (${formatRate(g.median)} GB/s) was above the parallel read's (${formatRate(par.gbPerSecond.median)}), but its runs spread from ${formatRate(g.min)} to ${formatRate(g.max)} GB/s (${Math.round(spreadOf(g) * 100)}% of its median, more than ${STEADY_SPREAD * 100}%): too unsteady to be the ceiling.`],
    };
  }
  return { read: par, reason: 'the parallel raw read', notes: [] };
}

function describeCache(cold: boolean, remote: boolean, cache: { evictions: number[]; before: number[] } | undefined, fs: string | undefined): CacheReport {
  const mode = cold ? 'cold' : 'warm';
  if (remote || !cache) {
    return {
      mode,
      applies: false,
      message: cold
        ? '--cold does not apply to http(s):// and s3:// sources: their bytes come over the network, and the server\'s page cache is out of reach; every run downloads the object again.'
        : 'Remote source: every run downloads the object again; this machine\'s page cache does not apply.',
    };
  }
  if (cold) {
    const worst = Math.max(0, ...cache.evictions);
    const evicted = worst <= EVICTION_TOLERANCE;
    const why = fs && UNEVICTABLE_FS.has(fs) ? `the file is on ${fs}, whose pages cannot be evicted` : `${fs ? `${fs}: ` : ''}the file system ignored posix_fadvise, or another process keeps the file mapped`;
    return {
      mode,
      applies: true,
      evicted,
      maxResidentAfterEviction: worst,
      message: evicted
        ? `Cold cache: the file was evicted from the page cache before every run (fdatasync + posix_fadvise DONTNEED; at most ${pct(worst)} of its pages were left).`
        : `eviction did not work: ${pct(worst)} still cached (${why}); these figures are not cold. Put the file on a disk (--dir) or drop caches as root (echo 1 > /proc/sys/vm/drop_caches).`,
    };
  }
  const least = Math.min(1, ...cache.before);
  return {
    mode,
    applies: true,
    minResidentBeforeRun: least,
    message:
      least >= 0.99
        ? `Warm cache: the file was read once before the runs, and ${pct(least)} of its pages were cached before every run.`
        : `Warm cache, but only ${pct(least)} of the file's pages were cached before some runs (it may not fit in free memory): these figures are partly cold.`,
  };
}

/** SourceOptions without the callbacks, with the CA as text: what a child process can be handed. */
function plainSourceOptions(s: SourceOptions | undefined): SourceOptions | undefined {
  if (!s) return undefined;
  const { onRetry: _r, onWarning: _w, ...http } = s.http ?? {};
  const { onRetry: _s, ...s3 } = s.s3 ?? {};
  return { http: { ...http, ...(http.ca !== undefined ? { ca: http.ca.toString() } : {}) }, s3 };
}
