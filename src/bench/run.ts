/**
 * `runBench()`: load benchmarks of one .tensors file, side by side, with the machine's
 * ceilings measured in the same run. The steps: settle the options and the device, read the
 * index, plan what runs (./plan.ts), run the rounds, summarize (./summary.ts), write the notes.
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
 * - Warm cache: the file evicted, then one untimed sequential read of it first, and the page-cache residency checked
 *   before every run. Cold cache: the file is evicted (fdatasync + posix_fadvise
 *   DONTNEED) before every run, and residency checked to show whether that worked.
 */
import { readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { formatBytes } from '../util/units.js';
import { TensorizeError } from '../errors.js';
import { TensorizerFile } from '../format/reader.js';
import { native } from '../native/binding.js';
import type { SourceOptions } from '../sources/open.js';
import { withHead } from '../sources/source.js';
import { METADATA_OFFSET } from '../format/constants.js';
import { closeCheckpoint, openCheckpointOrFile } from '../inputs/safetensors-checkpoint.js';
import { onInterrupt } from '../util/interrupt.js';
import { freePageReporting, hugePagesByDefault } from '../util/memory.js';
import { pageCacheResidency } from './cache.js';
import { planBench, settle, type Contents, type Plan, type Planned, type Setup } from './plan.js';
import { formatRate, spreadOf, STEADY_SPREAD } from './report.js';
import { chooseCeiling, describeCache, entryOf, summarize, type Residency } from './summary.js';
import { stopTask } from './task.js';
import type { BenchEntry, BenchOptions, BenchResult, PeerInfo, Sample } from './types.js';

/** Benchmark loading one .tensors file; see the module comment. */
export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const s = settle(opts);
  const contents = await readContents(s, opts.source);
  const plan = planBench(s, contents, opts);
  const unhook = onInterrupt(async () => stopTask());
  try {
    if (plan.link) await measureLink(s, plan.link);
    const vm = vmNote(s.log);
    const residency = await runRounds(s, plan.planned);
    const scored = score(plan);
    return {
      ok: true,
      schema: 'tensorize-bench/1',
      tool: toolVersion(),
      date: new Date().toISOString(),
      machine: machine(),
      source: { kind: opts.origin?.kind ?? (s.kind === 'file' ? 'tensors' : s.kind), input: opts.origin?.input ?? s.file, file: s.file, fileBytes: contents.fileBytes, tensorBytes: contents.tensorBytes, tensors: contents.tensors, ...(contents.filesystem ? { filesystem: contents.filesystem } : {}) },
      device: s.device,
      cache: describeCache(s.cold, s.remote, residency, contents.filesystem),
      runs: s.runs,
      settings: { readers: s.readers, chunkSize: s.chunkSize, ...(s.remote ? { concurrency: s.concurrency } : {}) },
      ceilings: scored.ceilings,
      ceiling: scored.ceiling,
      methods: scored.methods,
      skipped: [...plan.skipped, ...(opts.skipped ?? []), ...plan.planned.flatMap((p) => (p.failed ? [{ id: p.id, label: p.label, reason: p.failed }] : []))],
      ...(opts.peers ? { peers: opts.peers } : {}),
      notes: [...benchNotes(s, scored, vm, plan.planned.some((p) => p.id === 'mmap')), ...directNotes(scored.methods), ...peerNotes(scored.methods, contents, opts.peers)],
    };
  } finally {
    unhook();
  }
}

/** The index (or a safetensors checkpoint's headers): what there is to load, and a clear error when it is neither format. */
async function readContents(s: Setup, source: SourceOptions | undefined): Promise<Contents> {
  const opened = await openCheckpointOrFile(s.file, METADATA_OFFSET, s.remote ? source : undefined);
  let tensors = 0;
  let tensorBytes = 0;
  let fileBytes = 0;
  let files = 1;
  const add = (n: number) => {
    if (n === 0) return;
    tensors++;
    tensorBytes += n;
  };
  if ('checkpoint' in opened) {
    const c = opened.checkpoint;
    files = c.shards.length;
    for (const x of c.shards) {
      fileBytes += x.source.size;
      for (const t of x.header.tensors) add(t.end - t.begin);
    }
    await closeCheckpoint(c);
  } else {
    const src = opened.other;
    fileBytes = src.size;
    try {
      const tf = await TensorizerFile.open(withHead(src, opened.head));
      if (tf.info.hasCryptInfo && (await tf.readHeaders()).some((h) => (h.header.crypt?.chunks.length ?? 0) > 0)) {
        throw new TensorizeError('E_UNSUPPORTED', `${s.file} is encrypted: bench measures plain files (scripts/bench-encrypted.mjs compares encrypted loads with tensorizer's; docs/encryption.md)`);
      }
      for (const e of tf.entries) add(e.dataLength);
    } finally {
      await src.close();
    }
  }
  if (tensorBytes === 0) throw new TensorizeError('E_INPUT', `${s.file} holds no tensor data to load`);
  return { fileBytes, tensorBytes, tensors, files, filesystem: s.remote ? undefined : filesystemOf(s.file) };
}

/** The pinned host-to-device ceiling: measured once, before the rounds. */
async function measureLink(s: Setup, link: Planned): Promise<void> {
  s.log(`measuring the pinned host-to-device copy bandwidth of ${s.device.target}`);
  link.samples.push(await link.run());
}

/** On a VM that hands free memory back to its host: what that does to loads into host memory (logged, and kept for the notes). */
function vmNote(log: (line: string) => void): string | undefined {
  if (!freePageReporting()) return undefined;
  const note = `This VM hands free memory back to its host (virtio-balloon free page reporting): a fresh process often waits for the host to back its memory again, so loads into host memory vary with what ran just before; tensorize therefore ${hugePagesByDefault() ? 'still uses huge pages (TENSORIZE_HUGEPAGES=1)' : 'does not ask for huge pages here'} (see docs/benchmarks.md).`;
  log(`note: ${note}`);
  return note;
}

/**
 * `runs` rounds over everything planned, round r starting r places later; before them, warm
 * the page cache (each file evicted, then read once sequentially) unless cold. Returns what the page cache
 * held before the runs (local files).
 */
async function runRounds(s: Setup, planned: readonly Planned[]): Promise<Residency | undefined> {
  const residency: Residency | undefined = s.remote ? undefined : { evictions: [], before: [] };
  if (!s.remote && !s.cold) {
    // Every file is evicted, then read once from start to end by one thread, so that all of
    // them are cached alike, as after a download or a copy. How a file entered the page cache
    // decides how fast it can be mapped: read sequentially, its pages sit in large folios
    // that a mapping takes 2 MiB at a time (1 GiB mapped in ~2 ms here); written by many
    // threads, or read by parallel preads, in 4 KiB pages (30-200 ms). Left as found, a
    // .tensors file just written by serialize and a .safetensors file written in one stream
    // would hand the methods that map (--mmap, safetensors) different work.
    s.log('warming the page cache: each file evicted, then read once sequentially (so that every file is cached alike)');
    for (const f of new Set([s.file, ...planned.flatMap((p) => filesOf(s, p))])) {
      native().evictFile(f);
      await native().readProbe(f, 1, s.chunkSize);
    }
  }
  s.log(`${s.runs} run${s.runs > 1 ? 's' : ''} of each, interleaved, each in a fresh process${s.cold && !s.remote ? ', the file evicted from the page cache before each' : ''}`);
  for (let r = 0; r < s.runs; r++) {
    for (let k = 0; k < planned.length; k++) {
      const p = planned[(k + r) % planned.length]!;
      if (!p.failed) await runOnce(s, p, r, residency);
    }
    s.log(`  run ${r + 1}/${s.runs}: ${planned.filter((p) => !p.failed).map((p) => `${p.short} ${formatRate(p.samples[r]!.gbPerSecond)}`).join(', ')} GB/s`);
  }
  return residency;
}

/** The local files `p` reads. */
const filesOf = (s: Setup, p: Planned): readonly string[] => p.files ?? [p.file ?? s.file];

/** One timed run of `p` in round `r`; for a local file, evicted first when cold, its residency noted. */
async function runOnce(s: Setup, p: Planned, r: number, residency: Residency | undefined): Promise<void> {
  let before: number | undefined;
  if (residency) {
    const fs = filesOf(s, p);
    if (s.cold) for (const f of fs) native().evictFile(f);
    before = pageCacheResidency(fs);
    (s.cold ? residency.evictions : residency.before).push(before);
  }
  let sample: Sample;
  try {
    sample = await p.run();
  } catch (e) {
    const err = e instanceof TensorizeError ? e : new TensorizeError('E_IO', (e as Error)?.message ?? String(e));
    if (p.role === 'peer' && err.code !== 'E_INTERRUPTED') {
      // A peer that fails (a server it cannot authenticate to, a crash of its own) leaves the
      // rounds, listed with the reason; tensorize's own methods failing fails the bench.
      p.failed = `failed in run ${r + 1}, so it was left out: ${err.message}`;
      s.log(`warning: ${p.label} ${p.failed}`);
      return;
    }
    throw new TensorizeError(err.code, `${p.label}, run ${r + 1}: ${err.message}`, { hints: err.hints, cause: e });
  }
  if (before !== undefined) sample.residentBefore = before;
  p.samples.push(sample);
}

type Scored = ReturnType<typeof chooseCeiling> & { ceilings: BenchEntry[]; methods: BenchEntry[] };

/** The entries of the result, each with its fraction of the ceiling. */
function score(plan: Plan): Scored {
  const ceilings = [...plan.planned.filter((p) => p.role === 'ceiling'), ...(plan.link ? [plan.link] : [])].map(entryOf);
  const chosen = chooseCeiling(ceilings);
  const methods = plan.planned.filter((p) => p.role !== 'ceiling' && !p.failed).map(entryOf);
  const rate = chosen.ceiling.gbPerSecond;
  for (const e of [...ceilings, ...methods]) if (rate > 0) e.fractionOfCeiling = e.gbPerSecond.median / rate;
  return { ...chosen, ceilings, methods };
}

/** A safetensors checkpoint loaded as it is against the .tensors file it was converted into (same method, medians). */
export function directNotes(methods: readonly BenchEntry[]): string[] {
  const notes: string[] = [];
  for (const m of methods.filter((x) => x.id.endsWith('-safetensors'))) {
    const base = methods.find((x) => x.id === m.id.slice(0, -'-safetensors'.length));
    if (!base || base.gbPerSecond.median <= 0) continue;
    const r = m.gbPerSecond.median / base.gbPerSecond.median;
    notes.push(`Conversion: ${m.label} runs at ${Math.round(r * 100)}% of the same method on the converted .tensors file (${formatRate(m.gbPerSecond.median)} against ${formatRate(base.gbPerSecond.median)} GB/s, medians)${r >= 0.95 ? ': converting buys no load speed here (it buys per-tensor hashes for --verify, and one file)' : ': the converted file loads faster here'}.`);
  }
  return notes;
}

/** The notes under the table: units, runs and RSS, the ceiling and why, and what to keep in mind. */
function benchNotes(s: Setup, scored: Scored, vm: string | undefined, mmap: boolean): string[] {
  const { ceiling, binding } = scored;
  const gpu = s.device.gpu;
  const base = summarize([...scored.ceilings, ...scored.methods.filter((e) => e.role !== 'peer')].flatMap((e) => e.samples.map((x) => x.baseRssBytes ?? 0)).filter((x) => x > 0)).median;
  const notes = [
    'GB/s: 10^9 bytes of tensor data per second of the whole load (open, index, allocation, transfer, until the last tensor is in place); ceilings: bytes of the file per second.',
    `Each method ran ${s.runs} time${s.runs > 1 ? 's' : ''}, interleaved with the others, each run in a fresh ${scored.methods.some((e) => e.role === 'peer') ? 'process (Node for tensorize, Python for the peers)' : 'Node process'}: median, min and max. Peak RSS is that process's; for tensorize, ${formatBytes(base)} of it before the run started (Node, modules${gpu ? ', the CUDA context' : ''})${gpu ? '' : '; host loads include their destination'}.`,
    `Ceiling: ${ceiling.label}, ${formatRate(ceiling.gbPerSecond)} GB/s: ${ceiling.reason}; "of ceiling" is a method's median over it.${s.remote ? '' : ` The read ceiling is the parallel raw read (what --plaid does, with the same readers and chunk size); the 1-thread read replaces it only when its median is higher and its runs are steady (spread no more than ${STEADY_SPREAD * 100}% of its median).`}`,
    ...scored.notes,
  ];
  const spread = spreadOf(binding.gbPerSecond);
  if (binding.samples.length > 1 && spread > STEADY_SPREAD) {
    notes.push(`The ceiling's own runs spread from ${formatRate(binding.gbPerSecond.min)} to ${formatRate(binding.gbPerSecond.max)} GB/s (${Math.round(spread * 100)}% of its median): the fractions of it are rough; more --runs, or a quieter machine, narrow it.`);
  }
  if (vm) notes.push(vm);
  if (mmap) {
    notes.push(
      `--mmap copies nothing: it maps the file's pages from the page cache into the process${s.cold ? ', reading from disk only what is not cached' : ''}, so with the file cached it is page-table work and can exceed 100% of the ceiling, which is a read that copies every byte into a buffer. The pages stay the page cache's (they count in its peak RSS, as file-backed pages, without being new memory); a tensor written to is copied then, page by page.`,
    );
  }
  return notes;
}

/**
 * With peers: how they ran, whether each loaded the same bytes, and tensorize's fastest
 * method against the fastest peer, said plainly either way.
 */
export function peerNotes(methods: readonly BenchEntry[], contents: Pick<Contents, 'tensorBytes'>, peers: PeerInfo | undefined): string[] {
  const ran = methods.filter((m) => m.role === 'peer');
  if (ran.length === 0) return [];
  const notes = [
    `Peers: each run a fresh process of ${peers?.python ?? 'Python'}${peers?.pythonVersion ? ` (Python ${peers.pythonVersion}${peers.torch ? `, torch ${peers.torch}` : ''})` : ''}; the clock starts once Python, torch and the peer are imported and stops when every tensor is in place; their peak RSS includes Python and torch. Time to first tensor is shown where the peer hands tensors out one by one.`,
  ];
  for (const p of ran) {
    const odd = p.samples.filter((x) => x.bytes !== contents.tensorBytes);
    if (odd.length) notes.push(`${p.label} loaded ${odd[0]!.bytes} bytes of tensor data, and the file holds ${contents.tensorBytes}: its figures are not for the same work.`);
  }
  const best = (xs: readonly BenchEntry[]) => xs.reduce<BenchEntry | undefined>((a, b) => (!a || b.gbPerSecond.median > a.gbPerSecond.median ? b : a), undefined);
  const peer = best(ran)!;
  const ours = best(methods.filter((m) => m.role === 'method'));
  if (ours && peer.gbPerSecond.median > 0 && ours.gbPerSecond.median > 0) {
    const r = ours.gbPerSecond.median / peer.gbPerSecond.median;
    const a = `${ours.label}, ${formatRate(ours.gbPerSecond.median)} GB/s`;
    const b = `${peer.label}, ${formatRate(peer.gbPerSecond.median)} GB/s`;
    notes.push(r >= 1 ? `Fastest tensorize method against the fastest peer (medians): ${a}, is ${r.toFixed(2)}x ${b}.` : `The fastest peer is ahead: ${b}, is ${(1 / r).toFixed(2)}x tensorize's fastest method, ${a} (medians).`);
  }
  return notes;
}

function machine(): BenchResult['machine'] {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    node: process.version,
  };
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
