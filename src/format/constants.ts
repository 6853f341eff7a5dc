/** Fixed values of the tensorizer single-file format (docs/format.md §1-§5). */
export const MAGIC = Buffer.from('|TZR|', 'latin1');
/** magic(5) + version(4) + flags(32) + tensor_size(8) + reserved(8) + tensor_count(8) */
export const FILE_HEADER_SIZE = 65;
/** Offset of the u64 metadata length; the metadata starts 8 bytes later. */
export const METADATA_LENGTH_OFFSET = 65;
export const METADATA_OFFSET = 73;
export const SUPPORTED_VERSIONS: readonly number[] = [1, 2, 3, 4, 5];
/** The data version that a dimension of 2^32 or more needs (§1, §4.1). */
export const LONG_SHAPE_VERSION = 5;
/** Feature flag bit 0: every tensor header carries a crypt-info block (v4+). */
export const FLAG_ENCRYPTED = 1n;
/** Feature flag bit 1 (v5+): every index entry starts with a u32 entry version tag (§4.1). */
export const FLAG_VERSIONED_ENTRIES = 2n;
/** Every feature flag bit defined; higher bits are errors. */
export const KNOWN_FLAGS = FLAG_ENCRYPTED | FLAG_VERSIONED_ENTRIES;
/** Entry version tags (§4.1): the dimensions of the entry (and of its tensor header) are u32, or u64. */
export const ENTRY_TAG_U32 = 1;
export const ENTRY_TAG_U64 = 5;
/** Dimensions from this value up need 64-bit shape fields (data version 5). */
export const U32_DIM_LIMIT = 2 ** 32;

export enum TensorType {
  PARAM = 0,
  BUFFER = 1,
  STATE_DICT = 2,
}
export const TENSOR_TYPE_NAMES: Record<TensorType, 'param' | 'buffer' | 'state_dict'> = {
  [TensorType.PARAM]: 'param',
  [TensorType.BUFFER]: 'buffer',
  [TensorType.STATE_DICT]: 'state_dict',
};

export enum HashType {
  CRC32 = 0,
  SHA256 = 1,
}
export const HASH_LENGTHS: Record<HashType, number> = { [HashType.CRC32]: 4, [HashType.SHA256]: 32 };

/** A file has crypt-info blocks in every tensor header when it is v3, or v4+ with flag bit 0. */
export function hasCryptInfo(version: number, flags: bigint): boolean {
  return version === 3 || (version >= 4 && (flags & FLAG_ENCRYPTED) !== 0n);
}

/** Bytes per dimension in the shape fields of a tensor with this shape: 8 when any dimension needs it (§4.1). */
export function dimWidth(shape: readonly number[]): 4 | 8 {
  return shape.some((d) => d >= U32_DIM_LIMIT) ? 8 : 4;
}

/** Size of one metadata entry (`tagged`: with its u32 entry version tag, §4.1). */
export function metadataEntrySize(nameLen: number, dtypeLen: number, ndim: number, dimBytes: 4 | 8 = 4, tagged = false): number {
  return (tagged ? 4 : 0) + 2 + nameLen + 1 + 1 + dtypeLen + 1 + dimBytes * ndim + 24;
}

/** safetensors: the reference implementation refuses headers larger than this. */
export const SAFETENSORS_MAX_HEADER = 100_000_000;
