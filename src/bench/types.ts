/**
 * What `tensorize bench` works with: the options it takes, the tasks it hands its child
 * processes and the samples they send back, and the result it reports (the JSON document of
 * `--json`). Types and constants only: every bench module may import this one, and it
 * imports nothing from bench.
 */
import type { SourceOptions } from '../sources/open.js';

export type MethodId = 'plaid' | 'mmap' | 'simple' | 'naive';
export type ProbeId = 'read-parallel' | 'read-sequential' | 'download' | 'h2d';
export type TaskId = MethodId | ProbeId;

export const METHOD_IDS: readonly MethodId[] = ['plaid', 'mmap', 'simple', 'naive'];
export const DEFAULT_RUNS = 5;
/** The synthetic model's size when bench is given no source. */
export const DEFAULT_BENCH_SIZE = 2 ** 30;
export const DEFAULT_CONCURRENCY = 8;
/** Eviction "worked" when at most this fraction of the file's pages is still cached. */
export const EVICTION_TOLERANCE = 0.02;

/** What a child process is asked to measure (JSON-serialisable). */
export interface Task {
  id: TaskId;
  /** A local .tensors path, or an http(s):// / s3:// URL. */
  file: string;
  /** `cpu` or `cuda:N`. */
  device: string;
  readers: number;
  chunkSize: number;
  /** Remote sources: range requests in flight. */
  concurrency: number;
  source?: SourceOptions;
}

/** One timed run. */
export interface Sample {
  /** Wall time of the measured work: for a load, from opening the file until every tensor is in place. */
  seconds: number;
  /** Tensor bytes loaded (methods) or bytes moved (probes). */
  bytes: number;
  /** bytes / seconds / 1e9. */
  gbPerSecond: number;
  /** From the start until the first tensor was complete in its destination (methods). */
  firstTensorMs?: number;
  /** Peak resident set size of the child process that ran it. */
  peakRssBytes?: number;
  /** Its resident set size just before the run started (Node, modules, a CUDA context). */
  baseRssBytes?: number;
  /** Fraction of the file's pages in the page cache just before the run (local files). */
  residentBefore?: number;
}

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
  /** Methods the caller could not run (e.g. a peer not installed), listed with the reason. */
  skipped?: BenchResult['skipped'];
  /** The peers' environment, when extraMethods holds peer loaders. */
  peers?: PeerInfo;
  /** What the user asked to benchmark, when the file was made or converted from it. */
  origin?: { kind: BenchSourceKind; input: string };
  /**
   * A local safetensors checkpoint (the source as given: a file, an index, a directory) and
   * its files: its direct load (--plaid, and --mmap on the host) is measured beside the
   * .tensors file it was converted into.
   */
  direct?: { input: string; files: readonly string[] };
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
}

/** Where the peer loaders ran: each run a fresh process of this Python. */
export interface PeerInfo {
  python: string;
  pythonVersion?: string;
  torch: string | null;
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
  /** With peers: the Python they ran in. */
  peers?: PeerInfo;
  notes: string[];
}
