/**
 * safetensors input: one file, a sharded checkpoint (model.safetensors.index.json) or a
 * directory. Headers are validated the way the reference implementation does (header
 * length limit, known dtypes, offsets that exactly tile the data section), plus duplicate
 * names; tensor bytes are never read here, only located.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { TensorizeError } from '../errors.js';
import { dtypeBySafetensors, SAFETENSORS_SUBBYTE } from '../format/dtypes.js';
import { FileSource } from '../sources/file.js';
import type { ByteSource } from '../sources/source.js';
import { parseStrictJson, type Json, type JsonObject } from '../util/json.js';
import type { InputModel, InputTensor } from './model.js';
import { mergeModels, openShardedIndex, toPlain } from './sharded.js';

/** A UTF-16 surrogate not paired with another (with the u flag, pairs are one code point). */
const LONE_SURROGATE = /\p{Cs}/u;

/** The reference implementation refuses headers larger than this. */
export const MAX_HEADER_SIZE = 100_000_000;

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

export interface SafetensorsHeader {
  /** Byte offset of the data section (8 + header length). */
  dataStart: number;
  tensors: { name: string; dtype: string; shape: number[]; begin: number; end: number }[];
  metadata: Map<string, string>;
}

function bad(file: string, why: string, hints?: string[]): TensorizeError {
  return new TensorizeError('E_SAFETENSORS', `${file}: ${why}`, { hints });
}


export async function readSafetensorsHeader(src: ByteSource): Promise<SafetensorsHeader> {
  const f = src.name;
  if (src.size < 8) throw bad(f, `${src.size} bytes is too small for a safetensors file (no 8-byte header length)`);
  const n64 = (await src.read(0, 8)).readBigUInt64LE(0);
  if (n64 > BigInt(MAX_HEADER_SIZE)) throw bad(f, `header length ${n64} exceeds the ${MAX_HEADER_SIZE}-byte limit; this is not a safetensors file or it is corrupt`);
  const n = Number(n64);
  if (8 + n > src.size) throw bad(f, `header length ${n} runs past the end of the ${src.size}-byte file`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(await src.read(8, n));
  } catch (e) {
    if (e instanceof TensorizeError) throw e;
    throw bad(f, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw bad(f, 'header does not start with "{"; this is not a safetensors file');
  let root: Json;
  try {
    root = parseStrictJson(text);
  } catch (e) {
    throw bad(f, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (!(root instanceof Map)) throw bad(f, 'header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = src.size - dataStart;
  const metadata = new Map<string, string>();
  const tensors: SafetensorsHeader['tensors'] = [];
  for (const [name, v] of root) {
    // JSON escapes can spell a lone UTF-16 surrogate ("\ud800"), which has no UTF-8 form:
    // written out it would become U+FFFD and could collide with another name.
    if (LONE_SURROGATE.test(name)) throw bad(f, `tensor name ${JSON.stringify(name)} holds a lone UTF-16 surrogate, which is not text and has no UTF-8 form; the file cannot be converted as it is`);
    if (name === '__metadata__') {
      if (!(v instanceof Map)) throw bad(f, '__metadata__ is not an object of strings');
      for (const [k, s] of v as JsonObject) {
        if (typeof s !== 'string') throw bad(f, `__metadata__ value for ${JSON.stringify(k)} is not a string`);
        metadata.set(k, s);
      }
      continue;
    }
    const parsed = entrySchema.safeParse(toPlain(v));
    if (!parsed.success) {
      throw bad(f, `tensor ${JSON.stringify(name)}: invalid entry (${parsed.error.issues.map((i) => `${i.path.join('.') || 'entry'}: ${i.message}`).join('; ')})`);
    }
    const { dtype, shape, data_offsets } = parsed.data;
    const [begin, end] = data_offsets;
    const bits = dtypeBySafetensors(dtype) ? dtypeBySafetensors(dtype)!.itemsize * 8 : SAFETENSORS_SUBBYTE.get(dtype);
    if (bits === undefined) throw bad(f, `tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(dtype)}`);
    const nbits = shape.reduce((a, d) => a * BigInt(d), 1n) * BigInt(bits);
    if (nbits % 8n !== 0n) throw bad(f, `tensor ${JSON.stringify(name)}: ${dtype} tensor of shape [${shape}] does not fill whole bytes`);
    if (end < begin || BigInt(end - begin) !== nbits / 8n) {
      throw bad(f, `tensor ${JSON.stringify(name)}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but a ${dtype} tensor of shape [${shape}] needs ${nbits / 8n}`);
    }
    tensors.push({ name, dtype, shape, begin, end });
  }
  // Offsets must tile the data section exactly: no gaps, no overlaps, nothing left over.
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const t of sorted) {
    if (t.begin !== pos) {
      throw bad(f, `tensor ${JSON.stringify(t.name)}: data starts at offset ${t.begin}, expected ${pos} (tensor data must be contiguous without gaps or overlaps)`);
    }
    pos = t.end;
  }
  if (pos !== dataLen) {
    throw bad(f, pos > dataLen ? `tensor data ends at offset ${pos}, past the end of the ${dataLen}-byte data section; the file is truncated` : `the data section is ${dataLen} bytes but the tensors cover only ${pos}`);
  }
  return { dataStart, tensors: sorted, metadata };
}

/**
 * Tensors of one safetensors file, in data order. With `source` (an HTTP(S)/S3 object, left
 * open for the caller), `path` names where the tensors' bytes are read from.
 */
export async function openSafetensorsFile(path: string, source?: ByteSource): Promise<InputModel> {
  const src = source ?? (await FileSource.open(path));
  try {
    const h = await readSafetensorsHeader(src);
    const tensors: InputTensor[] = h.tensors.map((t) => {
      const dtype = dtypeBySafetensors(t.dtype);
      if (!dtype) {
        throw new TensorizeError('E_INEXPRESSIBLE', `${path}: tensor ${JSON.stringify(t.name)} has dtype ${t.dtype}, which the tensorizer format cannot express (sub-byte element types have no tensorizer dtype string)`);
      }
      if (t.name === '') throw bad(path, 'a tensor has an empty name, which tensorizer cannot read');
      return { path: [t.name], dtype, shape: t.shape, data: { path, ranges: [{ offset: h.dataStart + t.begin, length: t.end - t.begin }] } };
    });
    return { format: 'safetensors', files: [path], tensors, metadata: h.metadata, warnings: [] };
  } finally {
    if (!source) await src.close();
  }
}

/** A model directory: its index if it has one, else model.safetensors, else every *.safetensors. */
export async function openSafetensorsDir(dir: string): Promise<InputModel | undefined> {
  const names = await readdir(dir);
  if (names.includes('model.safetensors.index.json')) return openSafetensorsIndex(join(dir, 'model.safetensors.index.json'));
  const indexes = names.filter((n) => n.endsWith('.safetensors.index.json'));
  if (indexes.length === 1) return openSafetensorsIndex(join(dir, indexes[0]!));
  if (names.includes('model.safetensors')) return openSafetensorsFile(join(dir, 'model.safetensors'));
  const files = names.filter((n) => n.endsWith('.safetensors')).sort();
  const regular: string[] = [];
  for (const n of files) if ((await stat(join(dir, n))).isFile()) regular.push(n);
  if (regular.length === 0) return undefined;
  return mergeModels(await Promise.all(regular.map((n) => openSafetensorsFile(join(dir, n)))), 'E_SAFETENSORS');
}

/** A sharded checkpoint: `model.safetensors.index.json` and the shards it names. */
export function openSafetensorsIndex(indexPath: string): Promise<InputModel> {
  return openShardedIndex(indexPath, (p) => openSafetensorsFile(p), 'E_SAFETENSORS');
}
