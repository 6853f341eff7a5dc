/** What every input format (safetensors, later PyTorch) turns into: tensors and where their bytes are. */
import type { SourceData } from '../engine/job.js';
import type { DTypeInfo } from '../format/dtypes.js';
import type { TensorPath } from '../format/paths.js';

export interface InputTensor {
  path: TensorPath;
  dtype: DTypeInfo;
  shape: number[];
  /** Where the tensor's bytes are: ranges of a local file in order, or a strided view to gather. */
  data: SourceData;
}

export interface InputModel {
  format: 'safetensors' | 'pytorch';
  /** The files the tensors come from. */
  files: string[];
  tensors: InputTensor[];
  /** Free-form string metadata (safetensors `__metadata__`), merged across shards. */
  metadata: Map<string, string>;
  warnings: string[];
}
