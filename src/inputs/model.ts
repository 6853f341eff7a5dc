/** What every input format (safetensors, later PyTorch) turns into: tensors and where their bytes are. */
import type { Range } from '../engine/job.js';
import type { DTypeInfo } from '../format/dtypes.js';
import type { TensorPath } from '../format/paths.js';

export interface InputTensor {
  path: TensorPath;
  dtype: DTypeInfo;
  shape: number[];
  /** The tensor's contiguous little-endian bytes: these ranges of a local file, in order. */
  data: { path: string; ranges: Range[] };
}

export interface InputModel {
  format: 'safetensors';
  /** The files the tensors come from. */
  files: string[];
  tensors: InputTensor[];
  /** Free-form string metadata (safetensors `__metadata__`), merged across shards. */
  metadata: Map<string, string>;
  warnings: string[];
}
