import { Command } from 'commander';
import { load, type LoadOptions, type LoadStats } from '../../ops/load.js';
import { readKeySource, type KeySourceOptions } from '../../ops/decrypt.js';
import { addKeyOptions, addSourceOptions, parsePositiveInt, parseSize, sourceOptions, type SourceCliOptions } from '../options.js';
import { formatBytes, peakRssBytes, printJson, Progress, report, table, warn, type CommonOptions } from '../output.js';

interface Opts extends CommonOptions, SourceCliOptions, KeySourceOptions, Pick<LoadOptions, 'device' | 'plaid' | 'mmap' | 'readers' | 'chunkSize' | 'filter' | 'verify'> {
  tensors?: boolean;
  sha256?: string[];
}

function modeOf(s: LoadStats): string {
  const n = s.network;
  if (n) {
    const how = n.engine === 'native' ? 'native fetcher' : 'JavaScript client (TENSORIZE_NET=js)';
    return `${how}, ${n.connections} connections, ${formatBytes(s.chunkSize)} ranges${n.requests >= 0 ? `, ${n.requests} requests, ${n.retries} retried` : ''}`;
  }
  if (s.mmap) return `mmap (file pages mapped copy-on-write, no copy), ${s.readers} threads mapping ${formatBytes(s.chunkSize)} pieces`;
  return s.plaid ? `plaid, ${s.readers} readers, ${formatBytes(s.chunkSize)} chunks` : 'simple (read, then synchronous copy)';
}

/** What was and was not checked, in words. */
function integrityOf(s: LoadStats): string {
  if (s.format === 'safetensors') {
    const head = 'headers validated (offsets, sizes, dtypes)';
    if (!s.checksums) return `${head}; the data is not hashed (safetensors holds no hashes; --verify checks files against known SHA-256s)`;
    const from = [...new Set(s.checksums.map((c) => c.from))].join(', ');
    const n = s.checksums.length + (s.unchecked?.length ?? 0);
    const files = n === 1 ? 'the file\'s SHA-256' : `SHA-256 of ${s.checksums.length} of ${n} files`;
    return `${head}; ${files} verified while streaming (from ${from})${s.unchecked?.length ? `; NOT verified, no SHA-256 known: ${s.unchecked.join(', ')}` : ''}`;
  }
  const enc = s.encryption ? `; ${s.encryption.tensors} encrypted tensors authenticated (every chunk's MAC) and decrypted with the ${s.encryption.keyFrom} given` : '';
  if (s.verified) return `index and tensor headers checked; ${s.encryption ? 'SHA-256' : 'CRC32 and SHA-256'} of ${s.skipped ? `the ${s.tensors} loaded tensors` : 'every tensor'} verified${enc}`;
  return `index checked; tensor hashes not verified (--verify checks them)${enc}`;
}

export function loadCommand(): Command {
  return addKeyOptions(addSourceOptions(
    new Command('load')
      .description('stream a .tensors file, or a stock safetensors checkpoint as it is (one file, a sharded index, a directory), into GPU memory (or host memory) through the native loader and report timings')
      .argument('<file>', 'a .tensors or .safetensors file, a *.safetensors.index.json or a model directory: a path, an http(s):// URL or s3://bucket/key (a URL ending in / is a directory)'),
  ))
    .option('--device <device>', 'cuda, cuda:N or cpu (default: cuda:0 when a GPU is usable, else cpu)')
    .option('--plaid', 'the fast path: parallel readers into a pinned ring, copies overlapped on CUDA streams')
    .option('--mmap', 'host memory from a local file without copying: map the file copy-on-write and its tensors\' pages in from the page cache (implies --device cpu)')
    .option('--readers <n>', 'local files: reader threads for --plaid and --mmap (default 8)', parsePositiveInt('--readers', 256))
    .option('--chunk-size <size>', 'bytes per read and per ring slot (default 16MiB; HTTP/S3: bytes per range request, default 8MiB)', parseSize)
    .option('--filter <pattern>', 'load only tensors whose names match a glob or /regex/ (see below)')
    .option('--verify', 'check the file as verify does: every tensor header first, then the CRC32 and SHA-256 of every tensor loaded while streaming (with --filter, the data of the tensors left out is not read)')
    .option('--sha256 <hex|name=hex>', 'with --verify, a safetensors file\'s expected SHA-256 (NAME=HEX for each shard of several; repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--tensors', 'also list every loaded tensor')
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'no progress and no report')
    .addHelpText(
      'after',
      `
Without --plaid each tensor is read into ordinary memory and copied synchronously: the
simple baseline that --plaid is measured against. With --plaid, --readers threads pread
chunks into pinned host buffers (two per reader, each reader pinning its own with
cudaHostRegister before its first read; TENSORIZE_PINNED=alloc: cudaHostAlloc) while CUDA
streams copy the previous chunks to the device; host RAM in use is the ring, not the model. For
--device cpu the readers read straight into the destination. All tensors land in one
allocation at 256-byte aligned offsets; tensors not matched by --filter are not read.

--mmap (local files, host memory) copies nothing: the file is mapped copy-on-write
(MAP_PRIVATE) and --readers threads map the tensors' pages in from the page cache, reading
from disk what is not cached (MADV_POPULATE_READ). The tensors then sit at their offsets in
the file; the pages are the page cache's, so they count in RSS without being new memory,
and writing to a tensor copies the pages it touches (the file is never written). With
--verify each tensor's bytes are hashed as they are mapped in (a file truncated meanwhile
is an error, E_FILE_CHANGED). Files tensorizer writes carry no alignment, so mapped tensors
can start at odd offsets: the report counts them (misaligned); tensorize serialize writes
files without any (every tensor at a multiple of 64 bytes, unless given --no-align). As
with any memory-mapped weights, a file truncated or rewritten by
another process after the load changes or faults the tensors (SIGBUS on a later read);
copy (no --mmap) when the file may change.

A safetensors checkpoint loads as it is, with no conversion: one .safetensors file, a
sharded *.safetensors.index.json with its shards, or a directory (its index, else
model.safetensors, else every *.safetensors in it). Every shard's header is checked as
serialize checks it before anything is allocated; tensor names must be unique across the
shards and match the index. The shards load as one plan into one allocation, the readers
(or connections) spread over all of them at once. With --mmap each shard is mapped at its
own place in one region. safetensors holds no per-tensor hashes; with --verify each file
whose SHA-256 is known is hashed whole while it streams (its header, then its tensors, one
running hash per file) and checked: known from --sha256 (HEX for one file, NAME=HEX per
shard), from a SHA256SUMS file beside the checkpoint (sha256sum's output), or from the
server (Hugging Face resolve URLs state it: X-Linked-Etag). A file with none is loaded
unverified and the report says so; with none known at all --verify is a usage error. A
whole-file hash covers every tensor, so --verify cannot be combined with --filter there.

An encrypted .tensors file (tensorizer's XSalsa20-Poly1305 per chunk) needs its key
(--key-file, TENSORIZE_KEY=<hex>) or passphrase (--passphrase-file, TENSORIZE_PASSPHRASE;
the key is then derived with Argon2id as the file says). Every mode decrypts: each piece is
authenticated and decrypted in place as it streams (on the reader threads, or the
connections' threads), before it is hashed or copied to the device; with --mmap the
decrypted pages become private memory. A wrong key or a changed chunk fails the load,
naming the tensor, and frees everything. A key given for a file that is not encrypted is
an error too (tensor data is all that encryption authenticates).

The report gives the time to open the file and read its index, the time until the first
tensor was complete on the device, the transfer time, the total, GB/s, peak RSS, pinned
bytes and device bytes. The memory is freed when the command ends.

From http(s):// and s3:// the tensor data is fetched by the native fetcher: --concurrency
connections (default 8), each on its own thread, send ranged GETs of --chunk-size bytes
(default 8 MiB) in file order and receive the bodies straight into host memory, or into a
pinned two-slot ring per connection that CUDA copies to the GPU; nothing passes through
JavaScript. --verify hashes each tensor as its pieces arrive. Resets, timeouts, 5xx and 503
SlowDown are retried (--retries) and resumed from the last byte received; an object that
changes during the load is an error. S3 objects are read through a presigned URL.
TENSORIZE_NET=js uses the JavaScript client (undici) instead.

Host memory (--device cpu) is asked for transparent huge pages, except on VMs whose balloon
reports free memory back to the host (there fresh huge pages load 4x slower);
TENSORIZE_HUGEPAGES=1 or 0 decides instead. The JSON report says which (hugePages).

--filter takes a glob or a /regex/. A glob matches the whole name or its end after a dot:
'layers.*.weight' matches model.layers.0.mlp.up_proj.weight (* matches any characters,
dots included; ? one character); 'lm_head.weight' matches only that tensor (and
x.lm_head.weight). A /regex/ (with flags: /q_proj|k_proj/i) matches anywhere in the name.

Examples:
  tensorize load model.tensors --plaid
  tensorize load model.tensors --plaid --device cpu --verify --json
  tensorize load model.tensors --mmap --verify
  tensorize load model.tensors --filter 'layers.*.weight'
  tensorize load model.tensors --filter 'model.layers.0.*'
  tensorize load ./Llama-3.1-8B/ --plaid
  tensorize load https://huggingface.co/org/model/resolve/main/model.safetensors.index.json`,
    )
    .action(async (file: string, opts: Opts, cmd: Command) => {
      const decryption = await readKeySource(opts);
      const progress = new Progress(opts, 'load');
      const model = await load(file, {
        decryption,
        source: sourceOptions({ ...opts, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l)),
        concurrency: opts.concurrency,
        device: opts.device,
        plaid: !!opts.plaid,
        mmap: !!opts.mmap,
        readers: opts.readers,
        chunkSize: opts.chunkSize,
        filter: opts.filter,
        verify: !!opts.verify,
        sha256: opts.sha256,
        onWarning: (m) => warn(opts, m),
        onStart: progress.start,
        onProgress: (() => {
          let last = 0;
          return (done: number) => {
            progress.add(done - last);
            last = done;
          };
        })(),
      }).finally(() => progress.stop());
      const s = model.stats;
      const result = {
        ok: true,
        file,
        ...s,
        peakRssBytes: peakRssBytes(),
        ...(opts.tensors ? { tensorList: model.tensors } : {}),
      };
      // Printed only once the memory is given back: a device that refuses to free it fails
      // the command (exit 1) instead of following a report that said ok.
      model.close();
      if (s.misaligned > 0) {
        warn(opts, `${s.misaligned} of ${s.tensors} tensors start at file offsets that are not multiples of their element size (the file has no alignment padding, as tensorizer and safetensors write them): code that needs aligned data must copy them; tensorize serialize writes aligned files (64 bytes by default)`);
      }
      if (opts.json) printJson(result);
      else if (!opts.quiet) {
        const rows: [string, string][] = [
          ['input', `${s.format === 'tensorizer' ? '.tensors file' : s.files > 1 ? `safetensors checkpoint, ${s.files} shards` : 'safetensors file'}`],
          ['device', `${s.device} (${s.deviceName}${s.backend === 'simulated' ? ', SIMULATED: a CPU stand-in for tests, not a GPU' : ''})`],
          ['mode', `${modeOf(s)}${s.verified ? (s.skipped ? `, hashes of the ${s.tensors} loaded tensors verified (${s.skipped} filtered out: headers checked, data not read)` : ', hashes verified') : ''}`],
          ['integrity', integrityOf(s)],
          ['tensors', `${s.tensors}${s.skipped ? ` (${s.skipped} filtered out)` : ''}`],
          ['bytes', formatBytes(s.bytes)],
          ['open + index', `${s.openMs.toFixed(1)} ms`],
          ['first tensor', s.firstTensorMs < 0 ? '-' : `${s.firstTensorMs.toFixed(1)} ms`],
          ['transfer', `${s.transferMs.toFixed(1)} ms (${s.allocMs.toFixed(1)} ms of it allocating)`],
          ['total', `${s.totalMs.toFixed(1)} ms`],
          ['throughput', `${s.gbPerSecond.toFixed(2)} GB/s`],
          ['peak RSS', formatBytes(result.peakRssBytes)],
          ['pinned', formatBytes(s.pinnedBytes)],
          ['device memory', formatBytes(s.deviceBytes)],
          ...(s.mmap ? ([['file mapped', formatBytes(s.mappedBytes)]] as [string, string][]) : []),
        ];
        report(opts, rows.map(([k, v]) => `${k.padEnd(14)} ${v}`).join('\n'));
        if (opts.tensors) {
          report(opts, '\n' + table(['name', 'dtype', 'shape', 'device', 'offset', 'bytes'], model.tensors.map((t) => [t.name, t.dtype, `[${t.shape.join(', ')}]`, t.device, String(t.offset), String(t.bytes)]), new Set([4, 5])));
        }
      }
    });
}
