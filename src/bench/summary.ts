/**
 * From samples to the figures of the result: each method's and probe's median, min and max,
 * the ceiling results are held against (and why that one), and what the page cache did.
 */
import { formatRate, spreadOf, STEADY_SPREAD } from './report.js';
import { EVICTION_TOLERANCE, type BenchEntry, type BenchResult, type CacheReport, type Summary } from './types.js';

export function summarize(xs: readonly number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { median: 0, min: 0, max: 0 };
  const median = n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, min: s[0]!, max: s[n - 1]! };
}

/** One method's or probe's entry: its samples, and their GB/s, time, first tensor and peak RSS. */
export function entryOf(p: Pick<BenchEntry, 'id' | 'role' | 'label' | 'command' | 'samples'>): BenchEntry {
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
}

/**
 * The ceiling results are held against: the read ceiling (see readCeiling), or on a GPU the
 * pinned host-to-device copy (`h2d`) when that is slower. `binding` is its entry.
 */
export function chooseCeiling(ceilings: readonly BenchEntry[]): { ceiling: BenchResult['ceiling'] & { reason: string }; binding: BenchEntry; notes: string[] } {
  const pick = readCeiling(ceilings.filter((c) => c.id !== 'h2d'));
  const read = pick.read;
  const link = ceilings.find((c) => c.id === 'h2d');
  const binding = link && link.gbPerSecond.median < read.gbPerSecond.median ? link : read;
  const reason = binding === link ? `the pinned host-to-device copy: slower than reading the file (${pick.reason}, ${formatRate(read.gbPerSecond.median)} GB/s)` : pick.reason;
  return { ceiling: { id: binding.id, label: binding.label, gbPerSecond: binding.gbPerSecond.median, reason }, binding, notes: pick.notes };
}

/** Runs needed before a 1-thread read that beats the parallel one may be the ceiling. */
export const MIN_STEADY_RUNS = 3;

/**
 * The read ceiling: the parallel raw read, which reads the file the way --plaid does (the
 * same readers and chunk size). The 1-thread read replaces it only when its median is
 * higher and its runs are steady: on a shared VM a 1-thread read's runs were seen to
 * spread from 1.15 to 11.5 GB/s, and the median of a few such runs must not set the bar
 * every method is held against. Remote sources have one probe, the raw download.
 */
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

/** Page-cache residency seen during the runs of a local file: right after each eviction (cold), or before each run (warm). */
export interface Residency {
  evictions: number[];
  before: number[];
}

const UNEVICTABLE_FS = new Set(['tmpfs', 'ramfs']);
const pct = (f: number) => `${(f * 100).toFixed(f < 0.1 && f > 0 ? 1 : 0)}%`;

/** What the page cache did: whether eviction worked (cold), or how much of the file was cached (warm). */
export function describeCache(cold: boolean, remote: boolean, cache: Residency | undefined, fs: string | undefined): CacheReport {
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
        ? `Warm cache: the file was evicted, then read once sequentially before the runs, and ${pct(least)} of its pages were cached before every run.`
        : `Warm cache, but only ${pct(least)} of the file's pages were cached before some runs (it may not fit in free memory): these figures are partly cold.`,
  };
}
