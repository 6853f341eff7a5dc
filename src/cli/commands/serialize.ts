import { Command, InvalidArgumentError, Option } from 'commander';
import { basename, dirname, join } from 'node:path';
import { stat } from 'node:fs/promises';
import { TensorType } from '../../format/constants.js';
import { checkAlign, writeTensorizer } from '../../format/writer.js';
import type { InputModel } from '../../inputs/index.js';
import { sourceKind } from '../../sources/open.js';
import { addHttpOptions, addS3Options, parseCount, parsePositiveInt, parseSize, sourceOptions, type SourceCliOptions } from '../options.js';
import { formatBytes, gbps, log, peakRssBytes, printJson, Progress, warn, type CommonOptions } from '../output.js';

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
  readConcurrency?: number;
  align?: number;
}

const TYPES = { param: TensorType.PARAM, buffer: TensorType.BUFFER, state_dict: TensorType.STATE_DICT };

/** Where the output goes when -o is not given: beside the input, or <dir>/model.tensors (a URL: in the current directory). */
async function defaultOutput(input: string): Promise<string> {
  const remote = sourceKind(input) !== 'file';
  if (!remote && (await stat(input)).isDirectory()) return join(input, 'model.tensors');
  const base = basename(remote ? new URL(input).pathname : input).replace(/(\.safetensors|\.bin|\.pt|\.pth)?(\.index\.json)?$/, '');
  return remote ? `${base || 'model'}.tensors` : join(dirname(input), `${base || 'model'}.tensors`);
}

export function serializeCommand(): Command {
  return addS3Options(
    addHttpOptions(
      new Command('serialize')
        .description('convert safetensors or PyTorch weights (a file, a sharded index, or a model directory) into one .tensors file')
        .argument('<input>', 'a .safetensors file, a PyTorch .bin/.pt/.pth checkpoint, a *.index.json, or a directory holding them; or an http(s):// or s3:// URL of such a file or index')
        .option('-o, --output <file>', 'output .tensors file or s3://bucket/key (default: beside the input, or <dir>/model.tensors)'),
    ),
  )
    .option('--part-size <size>', 'S3 output: bytes per multipart part (default 16MiB, at least 5MiB)', parseSize)
    .option('--concurrency <n>', 'S3 output: parts uploading at once (default 4)', parsePositiveInt('--concurrency', 64))
    .option('--retries <n>', 'HTTP/S3 input and S3 output: retries of a failed request (default 5)', parseCount('--retries', 100))
    .option('--read-concurrency <n>', 'HTTP/S3 input: range requests in flight (default 8)', parsePositiveInt('--read-concurrency', 256))
    .addOption(
      new Option('--tensor-type <type>', 'tensor type recorded for every tensor (param/buffer for load_into_module, state_dict for plain state dicts)')
        .choices(Object.keys(TYPES))
        .default('state_dict'),
    )
    .option('--key <path>', 'PyTorch checkpoints: take the tensors under this dotted key (e.g. state_dict, model.encoder) and name them relative to it')
    .option('--align <bytes>', 'start every tensor\'s data at a multiple of this many bytes (a power of two, e.g. 64 or 4096), padding the tensor headers; default: no padding, byte for byte what tensorizer writes', parseAlign)
    .option('--threads <n>', 'worker threads that copy and hash (default: CPU count)', parsePositiveInt('--threads', 256))
    .option('--json', 'print one JSON document on stdout instead of the summary')
    .option('-q, --quiet', 'no progress or summary on stderr')
    .addHelpText(
      'after',
      `
Tensors are written in input order with CRC32 and SHA-256 hashes, exactly as tensorizer
writes them, so the file loads in tensorizer and vLLM. The data streams from input to
output; memory use does not grow with the model. The output appears only when complete.

PyTorch checkpoints (zip and legacy torch.save formats) are read by a data-only
unpickler: nothing in the file is executed, and a pickle naming any global other than
tensors, dicts and lists is refused. Nested dicts are flattened with dotted names;
non-contiguous tensors are gathered into contiguous bytes; non-tensor values are skipped.

--align N pads each tensor's header (zero bytes before its data_length field, covered by
its hashes) so that its data starts at a multiple of N bytes. tensorizer, and vLLM through
it, read such files (data_length is taken from a header's last 8 bytes); the default writes
no padding, byte for byte the file tensorizer writes. Aligned data is what lets
tensorize load --mmap hand out tensors that typed views and vector loads can use in place.

Examples:
  tensorize serialize model.safetensors -o model.tensors
  tensorize serialize model.safetensors -o model.tensors --align 64
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
local copy is made; on any failure or Ctrl-C the upload is aborted and no object appears.`,
    )
    .action(async (input: string, opts: Opts, cmd: Command) => {
      const t0 = performance.now();
      const src = sourceOptions({ ...opts, concurrency: opts.readConcurrency, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l));
      // The input readers (zod, the unpickler) load only for serialize.
      const { closeInput, openInput } = await import('../../inputs/index.js');
      const model = await openInput(input, { key: opts.key, source: src });
      try {
        await serializeModel(input, model, opts, src, t0);
      } finally {
        await closeInput(model);
      }
    });
}

async function serializeModel(input: string, model: InputModel, opts: Opts, src: ReturnType<typeof sourceOptions>, t0: number): Promise<void> {
  for (const w of model.warnings) warn(opts, w);
  const out = opts.output ?? (await defaultOutput(input));
  log(opts, `serializing ${model.tensors.length} tensors from ${model.files.length} ${model.format} file(s) to ${out}`);
  const progress = new Progress(opts, 'serialize');
  const summary = await writeTensorizer(
    out,
    model.tensors.map((t) => ({ path: t.path, type: TYPES[opts.tensorType], dtype: t.dtype, shape: t.shape, data: t.data })),
    {
      threads: opts.threads,
      onStart: progress.start,
      onProgress: progress.add,
      s3: { ...src.s3, connections: undefined, partSize: opts.partSize, concurrency: opts.concurrency },
      sources: model.sources,
      readConcurrency: opts.readConcurrency,
      onWarning: (m) => warn(opts, m),
      align: opts.align,
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
    warnings: [...model.warnings, ...summary.warnings],
  };
  if (opts.json) printJson(result);
  else
    log(
      opts,
      `wrote ${out}: ${result.tensors} tensors, ${formatBytes(result.dataBytes)} in ${seconds.toFixed(2)} s ` +
        `(${result.gbPerSecond.toFixed(2)} GB/s), peak RSS ${formatBytes(result.peakRssBytes)}, data version ${result.dataVersion}`,
    );
}
