/** Recognise an input path (file, sharded index, directory) and open it as an InputModel. */
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TensorizeError, usageError } from '../errors.js';
import { MAGIC } from '../format/constants.js';
import { fsError } from '../sources/file.js';
import { openSource, sourceKind, type SourceOptions } from '../sources/open.js';
import type { ByteSource } from '../sources/source.js';
import { closeInput, type InputModel } from './model.js';
import { openPytorchFile, sniffPytorch, type CheckpointOptions } from './pytorch/checkpoint.js';
import { openSafetensorsDir, openSafetensorsFile, openSafetensorsIndex } from './safetensors.js';
import { mergeModels, openShardedIndex, readRemoteIndex, type IndexIO } from './sharded.js';

export type { InputModel, InputTensor } from './model.js';
export { closeInput } from './model.js';

export interface InputOptions extends CheckpointOptions {
  /** How to reach http(s):// and s3:// inputs. */
  source?: SourceOptions;
}

async function sniff(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(512);
    const { bytesRead } = await fh.read(b, 0, 512, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Files in a directory that are never model weights, though they end in .bin / .pt. */
const NOT_WEIGHTS = /^(training_args\.bin|optimizer\.pt|scheduler\.pt|rng_state.*\.pth|trainer_state.*)$/;

function openPytorchIndex(path: string, opts: InputOptions): Promise<InputModel> {
  return openShardedIndex(path, (p) => openPytorchFile(p, opts), 'E_INPUT');
}

async function openPytorchDir(dir: string, opts: InputOptions): Promise<InputModel | undefined> {
  const names = (await readdir(dir)).sort();
  if (names.includes('pytorch_model.bin.index.json')) return openPytorchIndex(join(dir, 'pytorch_model.bin.index.json'), opts);
  const indexes = names.filter((n) => /\.(bin|pt|pth)\.index\.json$/.test(n));
  if (indexes.length === 1) return openPytorchIndex(join(dir, indexes[0]!), opts);
  if (names.includes('pytorch_model.bin')) return openPytorchFile(join(dir, 'pytorch_model.bin'), opts);
  let files = names.filter((n) => n.endsWith('.bin') && !NOT_WEIGHTS.test(n));
  if (files.length === 0) files = names.filter((n) => /\.(pt|pth)$/.test(n) && !NOT_WEIGHTS.test(n));
  const regular: string[] = [];
  for (const n of files) if ((await stat(join(dir, n))).isFile()) regular.push(n);
  if (regular.length === 0) return undefined;
  const models = [];
  for (const n of regular) models.push(await openPytorchFile(join(dir, n), opts));
  return mergeModels(models, 'E_INPUT');
}

export async function openInput(path: string, opts: InputOptions = {}): Promise<InputModel> {
  if (sourceKind(path) !== 'file') {
    const model = await openRemoteInput(path, opts);
    if (opts.key !== undefined && model.format !== 'pytorch') {
      await closeInput(model);
      throw usageError('--key applies to PyTorch checkpoints only; the input is ' + model.format);
    }
    return model;
  }
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw fsError(e, path);
  }
  const model = await openAny(path, st.isDirectory(), opts);
  if (opts.key !== undefined && model.format !== 'pytorch') throw usageError('--key applies to PyTorch checkpoints only; the input is ' + model.format);
  return model;
}

async function openAny(path: string, isDir: boolean, opts: InputOptions): Promise<InputModel> {
  if (isDir) {
    const m = (await openSafetensorsDir(path)) ?? (await openPytorchDir(path, opts));
    if (m) return m;
    throw new TensorizeError(
      'E_INPUT',
      `${path}: no model weights found (looked for *.safetensors with their index, and pytorch_model.bin / *.bin / *.pt with their index)`,
    );
  }
  if (path.endsWith('.safetensors.index.json')) return openSafetensorsIndex(path);
  if (path.endsWith('.index.json')) {
    return /\.(bin|pt|pth)\.index\.json$/.test(path) ? openPytorchIndex(path, opts) : openSafetensorsIndex(path);
  }
  const head = await sniff(path);
  if (head.subarray(0, 5).equals(MAGIC)) {
    throw new TensorizeError('E_INPUT', `${path} is already a tensorizer file`, {
      hints: ['check it with: tensorize verify ' + path, 'convert it back with: tensorize export ' + path + ' -o model.safetensors'],
    });
  }
  // safetensors: u64 header length (any value, so any first byte), then '{' at byte 8.
  const size = (await stat(path)).size;
  if (head.length >= 9 && head[8] === 0x7b && head.readBigUInt64LE(0) <= BigInt(size - 8)) return openSafetensorsFile(path);
  if (sniffPytorch(head)) return openPytorchFile(path, opts);
  if (path.endsWith('.safetensors')) return openSafetensorsFile(path); // let the parser say what is wrong
  throw new TensorizeError(
    'E_INPUT',
    `${path}: unrecognised input format (expected a .safetensors file, a PyTorch .bin/.pt checkpoint, a sharded *.index.json, or a model directory)`,
  );
}


/**
 * An http(s):// or s3:// input: one safetensors or PyTorch file, or a sharded `*.index.json`
 * whose shards are resolved next to it. The tensors' `data.path` is the URL; the open
 * sources stay in `model.sources` for the writer.
 */
async function openRemoteInput(url: string, opts: InputOptions): Promise<InputModel> {
  const sources = new Map<string, ByteSource>();
  const openOne = async (u: string, open: (src: ByteSource) => Promise<InputModel>): Promise<InputModel> => {
    const src = await openSource(u, opts.source);
    sources.set(u, src);
    return open(src);
  };
  try {
    let model: InputModel;
    if (/\.index\.json$/i.test(new URL(url).pathname)) {
      const io: IndexIO = {
        read: (u) => readRemoteIndex(u, opts.source),
        resolve: (index, shard) => new URL(shard, index).toString(),
      };
      const pytorch = /\.(bin|pt|pth)\.index\.json$/i.test(new URL(url).pathname);
      model = await openShardedIndex(
        url,
        (u) => openOne(u, (src) => (pytorch ? openPytorchFile(u, opts, src) : openSafetensorsFile(u, src))),
        pytorch ? 'E_INPUT' : 'E_SAFETENSORS',
        io,
      );
    } else {
      model = await openOne(url, (src) => openRemoteFile(url, src, opts));
    }
    model.sources = sources;
    return model;
  } catch (e) {
    for (const s of sources.values()) await s.close();
    throw e;
  }
}

async function openRemoteFile(url: string, src: ByteSource, opts: InputOptions): Promise<InputModel> {
  const head = await src.read(0, Math.min(src.size, 512));
  if (head.subarray(0, 5).equals(MAGIC)) {
    throw new TensorizeError('E_INPUT', `${url} is already a tensorizer file`, { hints: [`check it with: tensorize verify ${url}`] });
  }
  if (head.length >= 9 && head[8] === 0x7b && head.readBigUInt64LE(0) <= BigInt(src.size - 8)) return openSafetensorsFile(url, src);
  if (sniffPytorch(head)) return openPytorchFile(url, opts, src);
  throw new TensorizeError('E_INPUT', `${url}: unrecognised input format (expected a .safetensors file, a PyTorch .bin/.pt checkpoint or a sharded *.index.json)`);
}
