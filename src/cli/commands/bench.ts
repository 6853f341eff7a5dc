import { Command, InvalidArgumentError } from 'commander';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

import { formatText, renderHtml, renderSvg } from '../../bench/report.js';
import { benchDevice, checkMethods } from '../../bench/plan.js';
import { parsePeerList, PEER_IDS, type PeerId } from '../../bench/peers.js';
import { runBench } from '../../bench/run.js';
import { DEFAULT_BENCH_SIZE, DEFAULT_RUNS, METHOD_IDS, type MethodId } from '../../bench/types.js';
import { TensorizeError, usageError } from '../../errors.js';
import { native } from '../../native/binding.js';
import { sourceKind, type SourceOptions } from '../../sources/open.js';
import type { PreparedSource } from '../../bench/prepare.js';
import { onInterrupt } from '../../util/interrupt.js';
import { addSourceOptions, parsePositiveInt, parseSize, sourceOptions, type SourceCliOptions } from '../options.js';
import { printJson, warn, type CommonOptions } from '../output.js';

interface Opts extends CommonOptions, SourceCliOptions {
  size?: number;
  dir?: string;
  runs: number;
  cold?: boolean;
  device?: string;
  readers?: number;
  chunkSize?: number;
  methods?: MethodId[];
  report?: string;
  peers?: true | PeerId[];
  python?: string;
  safetensors?: string;
}

function parseReport(v: string): string {
  if (!/\.(html?|svg)$/i.test(v)) throw new InvalidArgumentError(`--report must name a .html or .svg file, not "${v}"`);
  return v;
}

function parsePeers(v: string): PeerId[] {
  try {
    return parsePeerList(v);
  } catch (e) {
    // `--peers model.tensors`: the list is optional, so the source was taken for it.
    const source = /[/.]/.test(v) ? ` ("${v}" looks like a source: put it before --peers, or write --peers all)` : '';
    throw new InvalidArgumentError(`${(e as Error).message}${source}`);
  }
}

function parseMethods(v: string): MethodId[] {
  const list = v.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = list.filter((m) => !(METHOD_IDS as readonly string[]).includes(m));
  if (list.length === 0 || bad.length) throw new InvalidArgumentError(`--methods takes a comma-separated list of ${METHOD_IDS.join(', ')}${bad.length ? ` (not ${bad.join(', ')})` : ''}`);
  return list as MethodId[];
}

export function benchCommand(): Command {
  return addSourceOptions(
    new Command('bench')
      .description('benchmark loading a model side by side: tensorize --plaid, --mmap, without --plaid and a naive baseline (with --peers, the other loaders too), against the machine\'s ceilings')
      .argument('[source]', 'a .tensors file, a .safetensors / PyTorch input (converted first), or an http(s):// or s3:// .tensors URL (default: a synthetic model)')
      .option('--size <bytes>', `synthetic model size when no source is given (default ${DEFAULT_BENCH_SIZE / 2 ** 30}GiB)`, parseSize)
      .option('--dir <dir>', 'write the synthetic model (or the converted source) here and keep it (default: a temporary directory, removed at the end)')
      .option('--runs <n>', 'timed runs of each method', parsePositiveInt('--runs', 100), DEFAULT_RUNS)
      .option('--cold', 'evict the file from the page cache before every run (posix_fadvise DONTNEED; local files)')
      .option('--device <device>', 'cuda, cuda:N or cpu (default: cuda:0 when a GPU is usable, else cpu)')
      .option('--readers <n>', 'reader threads of --plaid and of the parallel read ceiling (default 8)', parsePositiveInt('--readers', 256))
      .option('--chunk-size <size>', 'bytes per read of --plaid and the read ceilings (default 16MiB)', parseSize)
      .option('--methods <list>', `which methods to run, comma-separated (default ${METHOD_IDS.join(',')})`, parseMethods)
      .option('--peers [list]', `also run the peer loaders installed in --python's environment, each as a method in the same rounds: ${PEER_IDS.join(', ')} (default: all)`, parsePeers)
      .option('--python <path>', 'the Python with the peers (default: $TENSORIZE_PEER_PYTHON, else the venv of scripts/peers/setup.sh, ~/.cache/tensorize/peers, else python3)')
      .option('--safetensors <file|url>', 'the same tensors as .safetensors, for the peers that read only that (default: the source when it is one, else written beside the .tensors file for the run)')
      .option('--report <file>', 'also write the results as a chart: an .html page (chart, table, notes) or an .svg', parseReport)
      .option('--json', 'print one JSON document with every run on stdout, and nothing else there (the table goes to stderr)')
      .option('-q, --quiet', 'nothing on stderr but warnings (the table still goes to stdout)'),
  )
    .addHelpText(
      'after',
      `
Without a source, bench makes a synthetic bf16 transformer (realistic names and shapes),
serializes it with the same engine as \`tensorize serialize\`, verifies every hash, and
benchmarks loading it; a .safetensors or PyTorch source is converted the same way first.

Methods, each --runs times, interleaved, each run in a fresh process:
  plaid    tensorize load --plaid: parallel readers, pinned ring, overlapped copies
  mmap     tensorize load --mmap: the file mapped copy-on-write, its pages mapped in from
           the page cache, nothing copied (local files into host memory only)
  simple   tensorize load without --plaid: each tensor read, then copied
  naive    read the whole file into memory (download the whole object), then copy
           each tensor: what a script does; its peak RSS holds the whole file
Ceilings, measured in the same run: the raw read of the file (--readers threads, and one
thread) or, for http(s)/s3 sources, a plain parallel download; on a GPU also the pinned
host-to-device copy. The ceiling a load is held against is the parallel raw read, or the
1-thread read when that is faster and steady (at least 3 runs, spread over at most 50%
of its median); on a GPU the copy, if that is slower. Every result is shown as a fraction of it.

GB/s are 10^9 bytes of tensor data per second of the whole load (open, index, allocation,
transfer). Warm cache: the file evicted, then read once sequentially
(every file cached alike) first. --cold evicts the file before every run
and checks with mincore that it worked (it cannot on tmpfs: bench says so). --cold does
not apply to http(s)/s3 sources. Loads go to the GPU when there is one, else to host
memory; the output says which. A method named in --methods that cannot run here (mmap
with a URL or onto a GPU) is a usage error; one not named is skipped, with the reason.

Peers (--peers [list]): the other loaders as methods of the same rounds, each run in a
fresh Python process (--python; set up with scripts/peers/setup.sh): tensorizer on the
.tensors file; safetensors, Run:ai's streamer, fastsafetensors, InstantTensor and FlashPack
on the same tensors as .safetensors (the source, the synthetic model's, --safetensors, or
written beside the .tensors file for the run). One that cannot run here is listed with
the reason; a note compares the fastest peer with tensorize's fastest method.

Output: the table on stdout; progress, notes and warnings on stderr. With --json, stdout
holds one JSON document alone and the table goes to stderr (with the progress lines).
--mmap can pass 100% of the read ceiling: it maps the cached pages without copying them,
and the ceiling is a read that copies every byte.

Examples:
  tensorize bench                                   # 1 GiB synthetic model, warm cache
  tensorize bench --size 4GiB --cold --dir /data/tzb --report bench.html
  tensorize bench model.safetensors --runs 3 --json > bench.json
  tensorize bench --size 4GiB --cold --peers tensorizer,runai,fastsafetensors
  tensorize bench https://example.com/llama.tensors --methods plaid,naive`,
    )
    .action(async (source: string | undefined, opts: Opts, cmd: Command) => {
      if (source !== undefined && opts.size !== undefined) throw usageError('--size applies to the synthetic model only; it cannot be given with a source');
      if (!opts.peers && (opts.python !== undefined || opts.safetensors !== undefined)) throw usageError(`${opts.python !== undefined ? '--python' : '--safetensors'} applies to the peers: add --peers`);
      if (opts.methods) {
        // A method asked for by name that cannot run here is a usage error, found before any
        // work: from the command line first, then (no --device: a GPU would be used) the GPU.
        const remote = source !== undefined && sourceKind(source) !== 'file';
        const gpu = /^cuda/.test(opts.device ?? '');
        checkMethods(opts.methods, { remote, gpu, target: opts.device ?? 'cpu' });
        if (!remote && opts.device === undefined && opts.methods.includes('mmap')) {
          const d = benchDevice(undefined);
          checkMethods(opts.methods, { remote, gpu: d.gpu, target: d.target });
        }
      }
      const log = (line: string) => {
        if (!opts.quiet) process.stderr.write(`${line}\n`);
      };
      let report: string | undefined;
      if (opts.report) {
        report = resolve(opts.report);
        await mkdir(dirname(report), { recursive: true }).catch((e: Error) => {
          throw new TensorizeError('E_IO', `--report ${opts.report}: cannot create its directory: ${e.message}`);
        });
      }
      const src = sourceOptions({ ...opts, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l));
      // After Ctrl-C, whatever fails next (a killed child, a removed file) is the interrupt.
      let interrupted = false;
      const unhook = onInterrupt(async () => {
        interrupted = true;
      });
      const { prepareBenchSource } = await import('../../bench/prepare.js'); // the input readers load only here
      const prepared = await prepareBenchSource(source, { size: opts.size, dir: opts.dir, log }).catch((e: unknown) => {
        unhook();
        throw interrupted ? new TensorizeError('E_INTERRUPTED', 'interrupted') : e;
      });
      const made = prepared.kind === 'synthetic' || prepared.kind === 'converted';
      try {
        if (!made && opts.dir) warn(opts, `--dir is not used: ${prepared.file} is benchmarked where it is`);
        if (opts.cold && (prepared.kind === 'http' || prepared.kind === 's3')) {
          warn(opts, '--cold does not apply to http(s):// and s3:// sources (their bytes come over the network, not from this machine\'s page cache); every run downloads the object again');
        }
        const peers = opts.peers ? await planPeerMethods(opts.peers === true ? PEER_IDS : opts.peers, prepared, opts, src, log) : undefined;
        const result = await runBench({
          file: prepared.file,
          device: opts.device,
          runs: opts.runs,
          cold: !!opts.cold,
          readers: opts.readers,
          chunkSize: opts.chunkSize,
          concurrency: opts.concurrency,
          source: src,
          methods: opts.methods,
          origin: { kind: prepared.kind, input: prepared.input },
          direct: prepared.direct,
          extraMethods: peers?.methods,
          skipped: peers?.skipped,
          peers: peers?.about,
          log,
        });
        if (opts.cold && result.cache.applies && result.cache.evicted === false) warn(opts, result.cache.message);
        // The table is the result: stdout. With --json, stdout holds the JSON document alone,
        // and the table goes to stderr with the progress lines (unless -q).
        if (opts.json) log(`\n${formatText(result)}`);
        else process.stdout.write(`${formatText(result)}\n`);
        if (report) {
          await writeFile(report, /\.svg$/i.test(report) ? renderSvg(result) : renderHtml(result));
          log(`wrote ${report}`);
        }
        if (opts.json) printJson({ ...result, ...(report ? { report } : {}), ...(opts.dir && made ? { files: { tensors: prepared.file, ...(prepared.safetensors ? { safetensors: prepared.safetensors } : {}) } } : {}) });
      } catch (e) {
        throw interrupted ? new TensorizeError('E_INTERRUPTED', 'interrupted') : e;
      } finally {
        unhook();
        await prepared.cleanup();
      }
    });
}

/** The peers asked for, as extra methods of the bench (or skipped, each with the reason). */
async function planPeerMethods(ids: readonly PeerId[], prepared: PreparedSource, opts: Opts, src: SourceOptions, log: (line: string) => void) {
  const { checkPeers, peerPython, peersWantSafetensors, planPeers, s3PeerEnv } = await import('../../bench/peers.js');
  const { safetensorsForm } = await import('../../bench/prepare.js');
  if (opts.safetensors !== undefined && (sourceKind(opts.safetensors) === 'file') !== (sourceKind(prepared.file) === 'file')) {
    // The bench warms or evicts local files and downloads remote ones: both forms must be the one kind.
    throw usageError(`--safetensors ${opts.safetensors} must be ${sourceKind(prepared.file) === 'file' ? 'a local file, as the source is' : `a URL, as the source ${prepared.file} is`}: the peers are measured on the same kind of source as tensorize`);
  }
  const env = await checkPeers(peerPython(opts.python));
  const device = benchDevice(opts.device);
  const simulated = device.gpu && native().info().backend === 'simulated';
  const scope = { ids, env, target: device.target, simulated };
  const st = peersWantSafetensors(scope) ? await safetensorsForm(prepared, { given: opts.safetensors, log }) : {};
  const remoteS3 = [prepared.file, st.file].some((f) => f !== undefined && sourceKind(f) === 's3');
  const planned = planPeers({
    ...scope,
    tensors: prepared.file,
    safetensors: st.file,
    noSafetensors: st.why,
    childEnv: remoteS3 ? await s3PeerEnv(src.s3) : undefined,
  });
  for (const s of planned.skipped) log(`skipping the peer ${s.label}: ${s.reason}`);
  return { ...planned, about: { python: env.python, pythonVersion: env.pythonVersion, torch: env.torch } };
}
