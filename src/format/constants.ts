/** Fixed values of the tensorizer single-file format (docs/format.md §1-§5). */
export const MAGIC = Buffer.from('|TZR|', 'latin1');
/** magic(5) + version(4) + flags(32) + tensor_size(8) + reserved(8) + tensor_count(8) */
export const FILE_HEADER_SIZE = 65;
/** Offset of the u64 metadata length; the metadata starts 8 bytes later. */
export const METADATA_LENGTH_OFFSET = 65;
export const METADATA_OFFSET = 73;
export const SUPPORTED_VERSIONS: readonly number[] = [1, 2, 3, 4];
export const FLAG_ENCRYPTED = 1n;

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

/** Size of one metadata entry. */
export function metadataEntrySize(nameLen: number, dtypeLen: number, ndim: number): number {
  return 2 + nameLen + 1 + 1 + dtypeLen + 1 + 4 * ndim + 24;
}
