/**
 * What a bench runs, decided before anything is timed: the settings resolved, the device
 * (a GPU when one is usable), the ceiling probes for the source (raw reads of a local file,
 * a raw download of a URL), the methods that can run here (those that cannot are skipped
 * with the reason), and the caller's extra methods.
 */
import os from 'node:os';
import { TensorizeError } from '../errors.js';
import { native, type NativeInfo } from '../native/binding.js';
import { noDeviceReason } from '../native/report.js';
import { DEFAULT_CHUNK, DEFAULT_READERS, parseDevice } from '../ops/load.js';
import { sourceKind, type SourceKind } from '../sources/open.js';
import { H2D_PROBE_BYTES, H2D_PROBE_ITERATIONS, REMOTE_RANGE } from './measure.js';
import { plainSourceOptions, runTask } from './task.js';
import { DEFAULT_CONCURRENCY, DEFAULT_RUNS, METHOD_IDS, type BenchEntry, type BenchOptions, type BenchResult, type MethodId, type Sample, type TaskId } from './types.js';

/** A bench's settings, resolved. */
export interface Setup {
  file: string;
  kind: SourceKind;
  /** An http(s):// or s3:// source. */
  remote: boolean;
  runs: number;
  readers: number;
  chunkSize: number;
  concurrency: number;
  cold: boolean;
  device: BenchResult['device'];
  log: (line: string) => void;
}

/** What the file holds. */
export interface Contents {
  fileBytes: number;
  tensorBytes: number;
  tensors: number;
  /** Files it is in (a sharded checkpoint's shards). */
  files?: number;
  /** Local files: the file system they are on. */
  filesystem?: string;
}

/** One method or probe to run, and its samples so far. */
export interface Planned {
  id: string;
  /** The local file it reads, when not the benchmarked one. */
  file?: string;
  /** Or the local files it reads (a sharded checkpoint's shards). */
  files?: readonly string[];
  role: BenchEntry['role'];
  label: string;
  /** Its name in the progress lines. */
  short: string;
  command?: string;
  run: () => Promise<Sample>;
  samples: Sample[];
  /** A peer that failed: why; it is left out of the later rounds and the results. */
  failed?: string;
}

export interface Plan {
  /** The ceiling probes, then the methods, then the caller's extra methods: run in rounds. */
  planned: Planned[];
  /** On a GPU: the pinned host-to-device copy, measured once (it does not depend on the file). */
  link?: Planned;
  skipped: BenchResult['skipped'];
}

/** The options with their defaults, the device, and the methods asked for checked against both. */
export function settle(opts: BenchOptions): Setup {
  const kind = sourceKind(opts.file);
  const remote = kind !== 'file';
  const runs = opts.runs ?? DEFAULT_RUNS;
  if (!Number.isInteger(runs) || runs < 1) throw new TensorizeError('E_USAGE', 'runs must be a positive integer');
  const device = benchDevice(opts.device);
  checkMethods(opts.methods, { remote, gpu: device.gpu, target: device.target });
  return {
    file: opts.file,
    kind,
    remote,
    runs,
    readers: opts.readers ?? DEFAULT_READERS,
    chunkSize: opts.chunkSize ?? DEFAULT_CHUNK,
    concurrency: opts.concurrency ?? DEFAULT_CONCURRENCY,
    cold: opts.cold ?? false,
    device,
    log: opts.log ?? (() => {}),
  };
}

/** Each planned run's task, run in a fresh child process. */
type TaskRun = (id: TaskId) => () => Promise<Sample>;

/** What runs: the ceiling probes, then the methods (in METHOD_IDS order), then the extra methods. */
export function planBench(s: Setup, c: Contents, opts: BenchOptions): Plan {
  const source = s.remote ? plainSourceOptions(opts.source) : undefined;
  const task: TaskRun = (id) => () => runTask({ id, file: s.file, device: s.device.target, readers: s.readers, chunkSize: s.chunkSize, concurrency: s.concurrency, source });
  const plan: Plan = { planned: ceilingProbes(s, task), skipped: [] };
  planMethods(s, c, opts.methods ?? METHOD_IDS, task, plan);
  if (opts.direct) planDirect(s, opts.direct, opts.methods ?? METHOD_IDS, source, plan);
  for (const x of opts.extraMethods ?? []) {
    plan.planned.push({ id: x.id, file: x.file, role: 'peer', label: x.label, short: x.id, command: x.command, run: () => x.run(s.device.target), samples: [] });
  }
  if (s.device.gpu) {
    const label = `pinned host-to-device copy (${sizeLabel(H2D_PROBE_BYTES)}, best of ${H2D_PROBE_ITERATIONS})`;
    plan.link = { id: 'h2d', role: 'ceiling', label, short: 'h2d', run: task('h2d'), samples: [] };
  }
  return plan;
}

/** The raw download of a remote object; the raw reads (parallel and 1-thread) of a local file. */
function ceilingProbes(s: Setup, task: TaskRun): Planned[] {
  const probe = (id: TaskId, label: string, short: string): Planned => ({ id, role: 'ceiling', label, short, run: task(id), samples: [] });
  if (s.remote) return [probe('download', `raw download, ${s.concurrency} x ${sizeLabel(REMOTE_RANGE)} ranges in flight`, 'download')];
  return [
    probe('read-parallel', `raw read, ${s.readers} threads x ${sizeLabel(s.chunkSize)} preads`, `read x${s.readers}`),
    probe('read-sequential', `raw read, 1 thread, ${sizeLabel(s.chunkSize)} preads`, 'read x1'),
  ];
}

/** The tensorize methods asked for; --mmap where it cannot run and the naive baseline where it would not fit in RAM are skipped, with the reason. */
function planMethods(s: Setup, c: Contents, methods: readonly MethodId[], task: TaskRun, plan: Plan): void {
  const q = /^[\w./:@-]+$/.test(s.file) ? s.file : `'${s.file.replace(/'/g, `'\\''`)}'`;
  const target = s.device.gpu ? ` --device ${s.device.target}` : ' --device cpu';
  const how = s.remote ? `${s.concurrency} ranges in flight` : `${s.readers} readers, ${sizeLabel(s.chunkSize)} chunks`;
  const add = (id: MethodId, label: string, command: string | undefined) => plan.planned.push({ id, role: 'method', label, short: id, command, run: task(id), samples: [] });
  const skip = (id: MethodId, label: string, reason: string, what: string) => {
    plan.skipped.push({ id, label, reason });
    s.log(`skipping ${what}: ${reason}`);
  };
  for (const m of METHOD_IDS.filter((x) => methods.includes(x))) {
    if (m === 'plaid') add('plaid', `tensorize --plaid (${how})`, `tensorize load ${q} --plaid${target}`);
    if (m === 'mmap') {
      const label = 'tensorize --mmap (file pages mapped copy-on-write, no copy)';
      const reason = methodUnfit('mmap', { remote: s.remote, gpu: s.device.gpu, target: s.device.target });
      if (reason) skip('mmap', label, reason, '--mmap');
      else add('mmap', label, `tensorize load ${q} --mmap`);
    }
    if (m === 'simple') add('simple', s.remote ? `tensorize, no --plaid (${how})` : 'tensorize, no --plaid (read each tensor, then copy)', `tensorize load ${q}${target}`);
    if (m === 'naive') {
      const label = s.remote ? 'naive: download whole object, then copy' : 'naive: read whole file, then copy';
      const reason = naiveUnfit(s.device.gpu, c);
      if (reason) skip('naive', label, reason, 'the naive baseline');
      else add('naive', label, undefined);
    }
  }
}

/**
 * The safetensors checkpoint the .tensors file was converted from, loaded as it is: --plaid
 * (and --mmap on the host), where those methods are asked for, beside their .tensors runs.
 */
function planDirect(s: Setup, direct: NonNullable<BenchOptions['direct']>, methods: readonly MethodId[], source: BenchOptions['source'], plan: Plan): void {
  const q = /^[\w./:@-]+$/.test(direct.input) ? direct.input : `'${direct.input.replace(/'/g, `'\\''`)}'`;
  const target = s.device.gpu ? ` --device ${s.device.target}` : ' --device cpu';
  const shards = direct.files.length > 1 ? `${direct.files.length} shards, ` : '';
  for (const id of ['plaid', 'mmap'] as const) {
    if (!methods.includes(id) || methodUnfit(id, { remote: false, gpu: s.device.gpu, target: s.device.target })) continue;
    plan.planned.push({
      id: `${id}-safetensors`,
      files: direct.files,
      role: 'method',
      label: id === 'plaid' ? `tensorize --plaid, the .safetensors as is (${shards}no conversion)` : `tensorize --mmap, the .safetensors as is (${shards}no conversion)`,
      short: `${id} st`,
      command: `tensorize load ${q} --${id}${id === 'plaid' ? target : ''}`,
      run: () => runTask({ id, file: direct.input, device: s.device.target, readers: s.readers, chunkSize: s.chunkSize, concurrency: s.concurrency, source }),
      samples: [],
    });
  }
}

/** Why the naive baseline would not fit in this machine's RAM (the whole file, and on the host its destination), or undefined. */
function naiveUnfit(gpu: boolean, c: Contents): string | undefined {
  if ((c.files ?? 1) > 1) return `it reads one file, and this checkpoint is ${c.files} files`;
  const need = c.fileBytes + (gpu ? 0 : c.tensorBytes);
  if (need <= 0.9 * os.totalmem()) return undefined;
  return `it needs ${(need / 1e9).toFixed(1)} GB of RAM (the whole file${gpu ? '' : ' plus the host destination'}) and the machine has ${(os.totalmem() / 1e9).toFixed(1)} GB`;
}

function sizeLabel(n: number): string {
  return n % 2 ** 20 === 0 ? `${n / 2 ** 20} MiB` : n % 2 ** 10 === 0 ? `${n / 2 ** 10} KiB` : `${n} B`;
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

/** The device a bench loads onto: `requested`, else cuda:0 when a GPU is usable, else host memory. */
export function benchDevice(requested: string | undefined): BenchResult['device'] {
  const info = native().info();
  return describeDevice(requested, parseDevice(requested, () => info), info);
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
