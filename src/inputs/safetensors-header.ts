/**
 * The header of a safetensors file, read and validated the way the reference implementation
 * does (header length limit, known dtypes, offsets that exactly tile the data section), plus
 * duplicate names and text rules. No schema library: `load` of a .safetensors file imports
 * this module alone, and a fresh process should not pay for more (zod alone takes ~140 ms
 * to import on the 2-vCPU VM).
 */
import { TensorizeError } from '../errors.js';
import { SAFETENSORS_MAX_HEADER } from '../format/constants.js';
import { dtypeBySafetensors, SAFETENSORS_SUBBYTE } from '../format/dtypes.js';
import type { ByteSource } from '../sources/source.js';
import { parseStrictJson, type Json, type JsonObject } from '../util/json.js';

/** A UTF-16 surrogate not paired with another (with the u flag, pairs are one code point). */
const LONE_SURROGATE = /\p{Cs}/u;

/** The reference implementation refuses headers larger than this. */
export const MAX_HEADER_SIZE = SAFETENSORS_MAX_HEADER;

/**
 * Whether a file of `size` bytes that starts with `head` (its first 9 bytes at least) starts
 * as a safetensors file does: an 8-byte header length that fits the file, then `{`.
 */
export function isSafetensorsHead(head: Buffer, size: number): boolean {
  if (head.length < 9) return false;
  const n = head.readBigUInt64LE(0);
  return head[8] === 0x7b && n >= 2n && n <= BigInt(Math.min(SAFETENSORS_MAX_HEADER, size - 8));
}

const isCount = (x: Json | undefined): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;

/** A tensor's entry: {dtype: string, shape: [counts], data_offsets: [begin, end]} (other keys ignored), or what is wrong with it. */
function parseEntry(v: Json): { dtype: string; shape: number[]; data_offsets: [number, number] } | { problems: string[] } {
  if (!(v instanceof Map)) return { problems: ['entry: expected an object'] };
  const problems: string[] = [];
  const dtype = v.get('dtype');
  const shape = v.get('shape');
  const offsets = v.get('data_offsets');
  if (typeof dtype !== 'string') problems.push('dtype: expected a string');
  if (!Array.isArray(shape) || !shape.every(isCount)) problems.push('shape: expected an array of non-negative integers');
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) problems.push('data_offsets: expected two non-negative integers');
  if (problems.length) return { problems };
  return { dtype: dtype as string, shape: shape as number[], data_offsets: offsets as [number, number] };
}

export interface SafetensorsHeader {
  /** Byte offset of the data section (8 + header length). */
  dataStart: number;
  /** The file's bytes before the data section (the length and the JSON header): what a whole-file hash starts with. */
  head: Buffer;
  tensors: { name: string; dtype: string; shape: number[]; begin: number; end: number }[];
  metadata: Map<string, string>;
}

/** An E_SAFETENSORS error about `file`. */
export function safetensorsError(file: string, why: string, hints?: string[]): TensorizeError {
  return new TensorizeError('E_SAFETENSORS', `${file}: ${why}`, { hints });
}


export async function readSafetensorsHeader(src: ByteSource): Promise<SafetensorsHeader> {
  const f = src.name;
  if (src.size < 8) throw safetensorsError(f, `${src.size} bytes is too small for a safetensors file (no 8-byte header length)`);
  const len = await src.read(0, 8);
  const n64 = len.readBigUInt64LE(0);
  if (n64 > BigInt(MAX_HEADER_SIZE)) throw safetensorsError(f, `header length ${n64} exceeds the ${MAX_HEADER_SIZE}-byte limit; this is not a safetensors file or it is corrupt`);
  const n = Number(n64);
  if (8 + n > src.size) throw safetensorsError(f, `header length ${n} runs past the end of the ${src.size}-byte file`);
  let text: string;
  const json = await src.read(8, n);
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(json);
  } catch (e) {
    if (e instanceof TensorizeError) throw e;
    throw safetensorsError(f, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw safetensorsError(f, 'header does not start with "{"; this is not a safetensors file');
  let root: Json;
  try {
    root = parseStrictJson(text);
  } catch (e) {
    throw safetensorsError(f, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (!(root instanceof Map)) throw safetensorsError(f, 'header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = src.size - dataStart;
  const metadata = new Map<string, string>();
  const tensors: SafetensorsHeader['tensors'] = [];
  for (const [name, v] of root) {
    // JSON escapes can spell a lone UTF-16 surrogate ("\ud800"), which has no UTF-8 form:
    // written out it would become U+FFFD and could collide with another name.
    if (LONE_SURROGATE.test(name)) throw safetensorsError(f, `tensor name ${JSON.stringify(name)} holds a lone UTF-16 surrogate, which is not text and has no UTF-8 form; the file cannot be converted as it is`);
    if (name === '__metadata__') {
      if (!(v instanceof Map)) throw safetensorsError(f, '__metadata__ is not an object of strings');
      for (const [k, s] of v as JsonObject) {
        if (typeof s !== 'string') throw safetensorsError(f, `__metadata__ value for ${JSON.stringify(k)} is not a string`);
        metadata.set(k, s);
      }
      continue;
    }
    const parsed = parseEntry(v);
    if ('problems' in parsed) throw safetensorsError(f, `tensor ${JSON.stringify(name)}: invalid entry (${parsed.problems.join('; ')})`);
    const { dtype, shape, data_offsets } = parsed;
    const [begin, end] = data_offsets;
    const bits = dtypeBySafetensors(dtype) ? dtypeBySafetensors(dtype)!.itemsize * 8 : SAFETENSORS_SUBBYTE.get(dtype);
    if (bits === undefined) throw safetensorsError(f, `tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(dtype)}`);
    const nbits = shape.reduce((a, d) => a * BigInt(d), 1n) * BigInt(bits);
    if (nbits % 8n !== 0n) throw safetensorsError(f, `tensor ${JSON.stringify(name)}: ${dtype} tensor of shape [${shape}] does not fill whole bytes`);
    if (end < begin || BigInt(end - begin) !== nbits / 8n) {
      throw safetensorsError(f, `tensor ${JSON.stringify(name)}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but a ${dtype} tensor of shape [${shape}] needs ${nbits / 8n}`);
    }
    tensors.push({ name, dtype, shape, begin, end });
  }
  // Offsets must tile the data section exactly: no gaps, no overlaps, nothing left over.
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const t of sorted) {
    if (t.begin !== pos) {
      throw safetensorsError(f, `tensor ${JSON.stringify(t.name)}: data starts at offset ${t.begin}, expected ${pos} (tensor data must be contiguous without gaps or overlaps)`);
    }
    pos = t.end;
  }
  if (pos !== dataLen) {
    throw safetensorsError(f, pos > dataLen ? `tensor data ends at offset ${pos}, past the end of the ${dataLen}-byte data section; the file is truncated` : `the data section is ${dataLen} bytes but the tensors cover only ${pos}`);
  }
  return { dataStart, head: Buffer.concat([len, json]), tensors: sorted, metadata };
}

