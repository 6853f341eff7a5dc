/**
 * Element types: the torch name (our canonical name), the dtype string tensorizer writes,
 * the item size, and the safetensors name where safetensors has one.
 */
import { TensorizeError } from '../errors.js';

export interface DTypeInfo {
  /** torch dtype name without the `torch.` prefix, e.g. `bfloat16`. */
  readonly name: string;
  /** Bytes per element. */
  readonly itemsize: number;
  /** The dtype string written into .tensors files (numpy `dtype.str`, plus `\0torch.<name>` when opaque). */
  readonly tensorizer: string;
  /** True when numpy has no equivalent: the string is `<Vn\0torch.name` and needs data version 2. */
  readonly opaque: boolean;
  /** The safetensors dtype, or undefined when safetensors cannot express it. */
  readonly safetensors?: string;
}

function plain(name: string, np: string, itemsize: number, st?: string): DTypeInfo {
  return { name, itemsize, tensorizer: np, opaque: false, safetensors: st };
}
function opaque(name: string, itemsize: number, st?: string): DTypeInfo {
  // tensorizer views the tensor as a signed int of the same size and swaps `i` for `V`,
  // so 1-byte types get the `|` prefix and wider ones `<`.
  const np = `${itemsize === 1 ? '|' : '<'}V${itemsize}`;
  return { name, itemsize, tensorizer: `${np}\0torch.${name}`, opaque: true, safetensors: st };
}

const TABLE: readonly DTypeInfo[] = [
  plain('bool', '|b1', 1, 'BOOL'),
  plain('uint8', '|u1', 1, 'U8'),
  plain('int8', '|i1', 1, 'I8'),
  plain('int16', '<i2', 2, 'I16'),
  plain('int32', '<i4', 4, 'I32'),
  plain('int64', '<i8', 8, 'I64'),
  plain('uint16', '<u2', 2, 'U16'),
  plain('uint32', '<u4', 4, 'U32'),
  plain('uint64', '<u8', 8, 'U64'),
  plain('float16', '<f2', 2, 'F16'),
  plain('float32', '<f4', 4, 'F32'),
  plain('float64', '<f8', 8, 'F64'),
  plain('complex64', '<c8', 8, 'C64'),
  plain('complex128', '<c16', 16),
  opaque('bfloat16', 2, 'BF16'),
  opaque('complex32', 4),
  opaque('float8_e5m2', 1, 'F8_E5M2'),
  opaque('float8_e4m3fn', 1, 'F8_E4M3'),
  opaque('float8_e5m2fnuz', 1),
  opaque('float8_e4m3fnuz', 1),
  opaque('float8_e8m0fnu', 1, 'F8_E8M0'),
  opaque('float4_e2m1fn_x2', 1),
  opaque('bits1x8', 1),
  opaque('bits2x4', 1),
  opaque('bits4x2', 1),
  opaque('bits8', 1),
  opaque('bits16', 2),
  ...[1, 2, 3, 4, 5, 6, 7].flatMap((n) => [opaque(`uint${n}`, 1), opaque(`int${n}`, 1)]),
];

const BY_NAME = new Map(TABLE.map((d) => [d.name, d]));
const BY_NUMPY = new Map(TABLE.filter((d) => !d.opaque).map((d) => [d.tensorizer, d]));
const BY_SAFETENSORS = new Map(TABLE.filter((d) => d.safetensors).map((d) => [d.safetensors!, d]));

/** Look a dtype up by its torch name (`bfloat16`, `torch.bfloat16`). */
export function dtypeByName(name: string): DTypeInfo | undefined {
  return BY_NAME.get(name.startsWith('torch.') ? name.slice(6) : name);
}

export function dtypeBySafetensors(name: string): DTypeInfo | undefined {
  return BY_SAFETENSORS.get(name);
}

/** safetensors dtypes that exist but have no tensorizer equivalent (sub-byte element types). */
export const SAFETENSORS_SUBBYTE: ReadonlyMap<string, number> = new Map([
  ['F4', 4],
  ['F6_E2M3', 6],
  ['F6_E3M2', 6],
]);

/**
 * Decode a dtype string read from a .tensors file. Accepts every form tensorizer 2.11
 * reads: numpy strings (`<f4`, `|b1`), opaque strings (`<V2\0torch.bfloat16`), the
 * older opaque spelling of unsigned ints (`<V2\0torch.uint16`), and numpy strings with an
 * ignored suffix. An opaque string naming a torch dtype we do not know keeps its name and
 * the item size from `Vn`.
 */
export function parseTensorizerDtype(s: string): DTypeInfo {
  const parts = s.split('\0');
  if (parts.length > 2) throw new TensorizeError('E_FORMAT', `dtype string ${JSON.stringify(s)} has more than one NUL separator`);
  const [np, torchPart] = parts as [string, string | undefined];
  const known = BY_NUMPY.get(np);
  if (known) return known; // a suffix on a numpy-representable dtype is ignored (as tensorizer does)
  const m = /^([<|])V([0-9]{1,2})$/.exec(np);
  if (m && torchPart !== undefined) {
    const itemsize = Number(m[2]);
    if (!torchPart.startsWith('torch.') || !/^torch\.[A-Za-z_][A-Za-z0-9_]*$/.test(torchPart)) {
      throw new TensorizeError('E_FORMAT', `opaque dtype string ${JSON.stringify(s)} does not name a torch dtype`);
    }
    const d = BY_NAME.get(torchPart.slice(6));
    if (d) {
      if (d.itemsize !== itemsize) {
        throw new TensorizeError('E_FORMAT', `dtype string ${JSON.stringify(s)}: torch.${d.name} has ${d.itemsize}-byte items, not ${itemsize}`);
      }
      return d;
    }
    if (itemsize < 1) throw new TensorizeError('E_FORMAT', `dtype string ${JSON.stringify(s)} has a zero item size`);
    return { name: torchPart.slice(6), itemsize, tensorizer: s, opaque: true };
  }
  throw new TensorizeError('E_FORMAT', `unsupported dtype string ${JSON.stringify(s)}`, {
    hints: ['tensorizer files use little-endian numpy dtype strings such as "<f4", or "<V2\\0torch.bfloat16" for types numpy lacks'],
  });
}

export function allDtypes(): readonly DTypeInfo[] {
  return TABLE;
}

/** Reverse the byte order of every `unit`-byte element of b in place (2, 4 or 8; else nothing): big-endian data. */
export function swapBytes(b: Buffer, unit: number | undefined): void {
  if (unit === 2) b.swap16();
  else if (unit === 4) b.swap32();
  else if (unit === 8) b.swap64();
}
