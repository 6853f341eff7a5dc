import { Command, InvalidArgumentError, Option } from 'commander';
import { basename, dirname, join } from 'node:path';
import { stat } from 'node:fs/promises';
import { usageError } from '../../errors.js';
import { TensorType } from '../../format/constants.js';
import { numel } from '../../format/header.js';
import { pathToString } from '../../format/paths.js';
import { checkAlign, DEFAULT_ALIGN } from '../../format/encode.js';
import { writeTensorizer } from '../../ops/serialize.js';
import { readKeySource } from '../../ops/decrypt.js';
import { checkKdfParams, KDF_DEFAULT, type EncryptionOptions } from '../../ops/encrypt.js';
import type { InputModel } from '../../inputs/index.js';
import { fsError } from '../../sources/file.js';
import { sourceKind } from '../../sources/open.js';
import { refuseOverwrite, resolveOutput } from '../../util/outpath.js';
import { addHttpOptions, addS3Options, parseCount, parsePositiveInt, parseSize, sourceOptions, speedLimitOption, speedTimeOption, type SourceCliOptions } from '../options.js';
import { formatBytes, gbps, log, peakRssBytes, printJson, Progress, report, warn, type CommonOptions } from '../output.js';

function parseAlign(v: string): number {
  const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
  try {
    return checkAlign(n);
  } catch {
    throw new InvalidArgumentError('--align must be a power of two from 1 to 1048576 (bytes), e.g. 64 or 4096');
  }
}

interface Opts extends CommonOptions, SourceCliOptions {
  partSize?: number;
  output?: string;
  threads?: number;
  tensorType: 'param' | 'buffer' | 'state_dict';
  key?: string;
  expandViews?: boolean;
  readConcurrency?: number;
  /** A number from --align, false from --no-align, undefined: DEFAULT_ALIGN. */
  align?: number | false;
  buffers?: string[];
  encrypt?: boolean;
  keyFile?: string;
  passphraseFile?: string;
  kdfOps?: number;
  kdfMem?: number;
}

function parseKdfOps(v: string): number {
  const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('--kdf-ops must be a positive integer (Argon2id passes; default 3)');
  return n;
}

const MAKE_KEY = 'make a key with `head -c 32 /dev/urandom > model.key` (or `openssl rand -hex 32 > model.key`), keep it safe, and give --key-file model.key; or give a passphrase with --passphrase-file';

/**
 * --encrypt and its key options, checked before any input is read: --encrypt needs a key
 * or a passphrase (--key-file, --passphrase-file, TENSORIZE_KEY, TENSORIZE_PASSPHRASE); the
 * options need --encrypt; --kdf-ops and --kdf-mem go with a passphrase, within what
 * tensorize can read back. Undefined without --encrypt (TENSORIZE_KEY/PASSPHRASE alone,
 * which other commands read to decrypt, do not make serialize encrypt).
 */
async function encryptionOf(opts: Opts): Promise<EncryptionOptions | undefined> {
  const given = (['keyFile', 'passphraseFile', 'kdfOps', 'kdfMem'] as const).filter((k) => opts[k] !== undefined);
  const flag = (k: (typeof given)[number]) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  if (!opts.encrypt) {
    if (given.length) throw usageError(`${flag(given[0]!)} is for encrypted output: add --encrypt`);
    return undefined;
  }
  const source = await readKeySource(opts);
  if (!source) throw usageError('--encrypt needs a key or a passphrase: --key-file PATH, --passphrase-file PATH, or TENSORIZE_KEY / TENSORIZE_PASSPHRASE', [MAKE_KEY]);
  if (source.key !== undefined) {
    const kdf = given.find((k) => k === 'kdfOps' || k === 'kdfMem');
    if (kdf) throw usageError(`${flag(kdf)} sets how a key is derived from a passphrase; a key (--key-file, TENSORIZE_KEY) is used as it is`);
    return { key: source.key };
  }
  const pass = source.passphrase as Buffer;
  if (pass.length === 0) throw usageError('the passphrase is empty', [MAKE_KEY]);
  const opslimit = opts.kdfOps ?? KDF_DEFAULT.opslimit;
  const memlimit = opts.kdfMem ?? KDF_DEFAULT.memlimit;
  checkKdfParams(opslimit, memlimit, { ops: '--kdf-ops', mem: '--kdf-mem' });
  return { passphrase: pass, opslimit, memlimit };
}

const TYPES = { param: TensorType.PARAM, buffer: TensorType.BUFFER, state_dict: TensorType.STATE_DICT };

const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

/**
 * --buffers: one matcher for all patterns (a /regex/ as is; otherwise a comma-separated list
 * of globs), matched as load --filter matches names (compileFilter).
 */
async function buffersMatcher(patterns: string[]): Promise<(name: string) => boolean> {
  const { compileFilter } = await import('../../ops/load.js');
  const matchers = patterns
    .flatMap((p) => (/^\/.*\/[a-z]*$/s.test(p) ? [p] : p.split(',').filter((g) => g !== '')))
    .map((p) => {
      try {
        return compileFilter(p)!;
      } catch (e) {
        if (e instanceof Error) e.message = e.message.replace(/^--filter/, '--buffers');
        throw e;
      }
    });
  return (name) => matchers.some((m) => m(name));
}

/** The output's file name when -o is not given or names a directory: the input's, as .tensors (model.tensors for a directory). */
async function defaultName(input: string): Promise<string> {
  const remote = sourceKind(input) !== 'file';
  if (!remote) {
    const st = await stat(input).catch((e: unknown) => {
      throw fsError(e, input);
    });
    if (st.isDirectory()) return 'model.tensors';
  }
  const base = basename(remote ? new URL(input).pathname : input).replace(/(\.safetensors|\.bin|\.pt|\.pth)?(\.index\.json)?$/, '');
  return `${base || 'model'}.tensors`;
}

/**
 * Where the output goes: -o (into it under the default name when it is a directory), else
 * beside the input, or <dir>/model.tensors (a URL: in the current directory).
 */
async function outputPath(input: string, output: string | undefined): Promise<string> {
  const name = await defaultName(input);
  if (output !== undefined) return sourceKind(output) === 's3' ? output : resolveOutput(output, name);
  if (sourceKind(input) !== 'file') return name;
  return (await stat(input)).isDirectory() ? join(input, name) : join(dirname(input), name);
}

export function serializeCommand(): Command {
  return addS3Options(
    addHttpOptions(
      new Command('serialize')
        .description('convert safetensors or PyTorch weights (a file, a sharded index, or a model directory) into one .tensors file')
        .argument('<input>', 'a .safetensors file, a PyTorch .bin/.pt/.pth checkpoint, a *.index.json, or a directory holding them; or an http(s):// or s3:// URL of such a file or index')
        .option('-o, --output <file>', 'output .tensors file, a directory to write it into, or s3://bucket/key (default: beside the input, or <dir>/model.tensors)'),
    ),
  )
    .option('--part-size <size>', 'S3 output: bytes per multipart part (default 16MiB, at least 5MiB)', parseSize)
    .option('--concurrency <n>', 'S3 output: parts uploading at once (default 4)', parsePositiveInt('--concurrency', 64))
    .option('--retries <n>', 'HTTP/S3 input and S3 output: retries of a failed request (default 5)', parseCount('--retries', 100))
    .option('--read-concurrency <n>', 'HTTP/S3 input: range requests in flight (default 8)', parsePositiveInt('--read-concurrency', 256))
    .addOption(speedLimitOption())
    .addOption(speedTimeOption())
    .addOption(
      new Option('--tensor-type <type>', 'tensor type recorded for every tensor (state_dict for plain state dicts; for load_into_module use --buffers)')
        .choices(Object.keys(TYPES))
        .default('state_dict'),
    )
    .option('--key <path>', 'PyTorch checkpoints: take the tensors under this dotted key (e.g. state_dict, model.encoder) and name them relative to it')
    .option('--expand-views', 'PyTorch checkpoints: write expanded views (torch.expand, stride 0) however large they get written out (default: refused above 64 MiB of growth)')
    .option('--buffers <pattern>', 'record the tensors matching this glob (or /regex/; repeatable, or a comma list of globs) as module buffers and all others as parameters, for tensorizer\'s load_into_module', collect)
    .option('--align <bytes>', `start every tensor's data at a multiple of this many bytes (a power of two, e.g. 64 or 4096), padding the tensor headers (default: ${DEFAULT_ALIGN})`, parseAlign)
    .option('--no-align', 'no padding: tensorizer\'s own layout, where tensors start at any offset (same as --align 1)')
    .option('--threads <n>', 'worker threads that copy and hash (default: CPU count)', parsePositiveInt('--threads', 256))
    .option('--encrypt', 'encrypt the tensor data as tensorizer does (XSalsa20-Poly1305), with --key-file or --passphrase-file (or TENSORIZE_KEY / TENSORIZE_PASSPHRASE)')
    .option('--key-file <path>', 'with --encrypt: the key, 32 bytes or 64 hex characters (make one: head -c 32 /dev/urandom > model.key)')
    .option('--passphrase-file <path>', 'with --encrypt: a passphrase (its last line break ignored) to derive the key from with Argon2id')
    .option('--kdf-ops <n>', `with --passphrase-file: Argon2id passes (default ${KDF_DEFAULT.opslimit}, libsodium's MODERATE, tensorizer's default)`, parseKdfOps)
    .option('--kdf-mem <size>', `with --passphrase-file: Argon2id memory (default 256MiB, MODERATE; at least 8KiB)`, parseSize)
    .option('--json', 'print one JSON document on stdout instead of the summary')
    .option('-q, --quiet', 'no progress and no summary')
    .addHelpText(
      'after',
      `
Tensors are written in input order with CRC32 and SHA-256 hashes, in tensorizer's format,
so the file loads in tensorizer and vLLM. The data streams from input to output; memory
use does not grow with the model. The output appears only when complete. -o naming a
directory writes into it under the input's name (as cp does); -o naming one of the inputs
(the same path, a symlink or a hard link to it) is refused before any work.

PyTorch checkpoints (zip and legacy torch.save formats) are read by a data-only
unpickler: nothing in the file is executed, and a pickle naming any global other than
tensors, dicts and lists is refused. Nested dicts are flattened with dotted names;
non-contiguous tensors are gathered into contiguous bytes; non-tensor values are skipped.
Expanded views (torch.expand: elements repeated by a stride of 0) are written element by
element and can be far larger than the checkpoint: above 64 MiB of growth in all they are
refused unless --expand-views is given; smaller ones are written with a warning.

--align N pads each tensor's header (zero bytes before its data_length field, covered by
its hashes) so that its data starts at a multiple of N bytes; the default is ${DEFAULT_ALIGN}, so
tensorize load --mmap hands out tensors that typed views and vector loads can use in place.
tensorizer 2.10 to 2.12, and vLLM through it, read such files (data_length is taken from a
header's last 8 bytes). --no-align (or --align 1) writes no padding: each tensor's header
and data byte for byte what tensorizer writes (which also reserves 256 KiB for the index).

By default every tensor is recorded as a state_dict entry: tensorizer and vLLM read it as a
mapping of names to tensors. tensorizer's TensorDeserializer.load_into_module(module),
which vLLM's tensorizer loader uses, needs each tensor recorded as a parameter or a buffer,
as the module registers it (a buffer recorded as a parameter fails with KeyError "attribute
... already exists"): name the buffers with --buffers (e.g. --buffers '*.running_mean,
*.running_var,*.num_batches_tracked', or --buffers '/(^|\\.)(running_|num_batches)/'),
and the other tensors are parameters. --tensor-type param|buffer records one type for all.

Examples:
  tensorize serialize model.safetensors -o model.tensors
  tensorize serialize model.safetensors -o model.tensors --no-align
  tensorize serialize model.safetensors -o model.tensors --buffers '*.running_mean,*.running_var,*.num_batches_tracked'
  tensorize serialize ./Llama-3-8B/ -o llama.tensors --json
  tensorize serialize pytorch_model.bin.index.json -o model.tensors
  tensorize serialize checkpoint.pt --key state_dict -o model.tensors
  tensorize serialize model.safetensors -o s3://models/llama.tensors --endpoint http://minio:9000
  tensorize serialize https://example.com/llama/model.safetensors.index.json -o s3://models/llama.tensors

An http(s):// or s3:// input is read by range (--read-concurrency requests in flight) and
written in place, without a local copy; a PyTorch file holding strided views is
downloaded to a temporary file first.

With -o s3://bucket/key the file is produced in order into a multipart upload (each
tensor is hashed first, then read again and uploaded), so memory stays bounded and no
local copy is made; on any failure or Ctrl-C the upload is aborted and no object appears.

--encrypt encrypts every tensor's data as tensorizer's EncryptionParams does, so that
tensorizer (TensorDeserializer with DecryptionParams.from_key or .from_string), vLLM and
tensorize (--key-file / --passphrase-file) read it: XSalsa20-Poly1305 over each 2 MiB
chunk, a random nonce per tensor, one MAC per chunk in the tensor's header. The index,
names, dtypes, shapes and hashes stay readable and are not authenticated; only tensor data
is encrypted. The key is 32 bytes from --key-file (raw, or 64 hex characters) or
TENSORIZE_KEY, used as it is (tensorizer's EncryptionParams(key=...)); or it is derived from
the passphrase in --passphrase-file or TENSORIZE_PASSPHRASE with Argon2id and a random salt
(stored in the file, with --kdf-ops and --kdf-mem: tensorizer's from_string, default
MODERATE, 3 passes over 256 MiB). Keys are never taken as arguments (ps and shell history
show those). Without --encrypt, TENSORIZE_KEY and TENSORIZE_PASSPHRASE are ignored here.
  head -c 32 /dev/urandom > model.key      (or: openssl rand -hex 32 > model.key)
  tensorize serialize model.safetensors -o model.tensors --encrypt --key-file model.key
  tensorize load model.tensors --key-file model.key
An encrypted file has data version 3 (4 and flag bit 0 when it has meta tensors), as
tensorizer writes it (tested with tensorizer 2.10 to 2.12). Tensors without data (no
elements, or meta) are not encrypted. Network inputs are downloaded to a temporary file
first (the network reader does not encrypt), and PyTorch tensors stored strided or
big-endian are gathered into one (the copy engine encrypts plain ranges only).`,
    )
    .action(async (input: string, opts: Opts, cmd: Command) => {
      const t0 = performance.now();
      if (opts.buffers && cmd.getOptionValueSource('tensorType') !== 'default' && opts.tensorType !== 'param') {
        throw usageError(`--buffers records the matching tensors as buffers and the others as parameters; it cannot be combined with --tensor-type ${opts.tensorType}`);
      }
      if (opts.buffers) await buffersMatcher(opts.buffers); // a bad pattern: a usage error before any input is read
      const encryption = await encryptionOf(opts);
      const src = sourceOptions({ ...opts, concurrency: opts.readConcurrency, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l));
      // Where the output goes, checked before the input is read; and once the input's files
      // are known (shards), against them too.
      const out = await outputPath(input, opts.output);
      const local = sourceKind(out) === 'file' && sourceKind(input) === 'file';
      if (local) await refuseOverwrite(out, [input]);
      // The input readers (zod, the unpickler) load only for serialize.
      const { closeInput, openInput } = await import('../../inputs/index.js');
      const model = await openInput(input, { key: opts.key, expandViews: opts.expandViews, source: src });
      try {
        if (local) await refuseOverwrite(out, model.files);
        opts.output = out;
        await serializeModel(input, model, opts, src, t0, encryption);
      } finally {
        wipe(encryption);
        await closeInput(model);
      }
    });
}

/** The key or passphrase read from a file or the environment, zeroed. */
function wipe(e: EncryptionOptions | undefined): void {
  const b = e && ('key' in e ? e.key : e.passphrase);
  if (b && typeof b !== 'string') b.fill(0);
}

async function serializeModel(input: string, model: InputModel, opts: Opts, src: ReturnType<typeof sourceOptions>, t0: number, encryption: EncryptionOptions | undefined): Promise<void> {
  for (const w of model.warnings) warn(opts, w);
  const out = opts.output!;
  const bytes = model.tensors.reduce((n, t) => n + Number(numel(t.shape)) * t.dtype.itemsize, 0);
  log(opts, `serializing ${model.tensors.length} tensors (${formatBytes(bytes)}) from ${model.files.length} ${model.format} file(s) to ${out}${encryption ? ', encrypted' : ''}`);
  const isBuffer = opts.buffers ? await buffersMatcher(opts.buffers) : undefined;
  const typeOf = (t: InputModel['tensors'][number]): TensorType => {
    if (!isBuffer) return TYPES[opts.tensorType];
    return isBuffer(pathToString(t.path)) ? TensorType.BUFFER : TensorType.PARAM;
  };
  const tensors = model.tensors.map((t) => ({ path: t.path, type: typeOf(t), dtype: t.dtype, shape: t.shape, data: t.data }));
  if (isBuffer && !tensors.some((t) => t.type === TensorType.BUFFER)) warn(opts, `--buffers ${opts.buffers!.join(' ')} matched no tensor: all are recorded as parameters`);
  const progress = new Progress(opts, 'serialize');
  const summary = await writeTensorizer(
    out,
    tensors,
    {
      threads: opts.threads,
      onStart: progress.start,
      onProgress: progress.add,
      s3: { ...src.s3, connections: undefined, partSize: opts.partSize, concurrency: opts.concurrency },
      sources: model.sources,
      readConcurrency: opts.readConcurrency,
      onWarning: (m) => warn(opts, m),
      align: opts.align === false ? 1 : (opts.align ?? DEFAULT_ALIGN),
      encryption,
    },
  ).finally(() => progress.stop());
  const seconds = (performance.now() - t0) / 1000;
  for (const w of summary.warnings) warn(opts, w);
  const result = {
    ok: true,
    input,
    output: out,
    format: model.format,
    tensors: summary.tensors,
    dataBytes: summary.dataBytes,
    fileBytes: summary.fileBytes,
    dataVersion: summary.version,
    seconds: Number(seconds.toFixed(3)),
    gbPerSecond: Number(gbps(summary.dataBytes, seconds).toFixed(3)),
    peakRssBytes: peakRssBytes(),
    ...(summary.encryption ? { encryption: summary.encryption } : {}),
    warnings: [...model.warnings, ...summary.warnings],
  };
  const e = summary.encryption;
  const how = !e
    ? ''
    : `; encrypted (${e.cipher}, ${formatBytes(e.chunkSize ?? 0)} chunks, ${e.encryptedTensors} tensor(s)) with ` +
      (e.kdf ? `a key derived from the passphrase (Argon2id, opslimit ${e.kdf.opslimit}, memlimit ${formatBytes(e.kdf.memlimit)}): read it with --passphrase-file` : 'the key: read it with --key-file');
  if (opts.json) printJson(result);
  else
    report(
      opts,
      `wrote ${out}: ${result.tensors} tensors, ${formatBytes(result.dataBytes)} in ${seconds.toFixed(2)} s ` +
        `(${result.gbPerSecond.toFixed(2)} GB/s), peak RSS ${formatBytes(result.peakRssBytes)}, data version ${result.dataVersion}${how}`,
    );
}
