/** What every input format (safetensors, later PyTorch) turns into: tensors and where their bytes are. */
import type { SourceData } from '../format/view.js';
import type { DTypeInfo } from '../format/dtypes.js';
import type { TensorPath } from '../format/paths.js';
import type { ByteSource } from '../sources/source.js';

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
  /**
   * Inputs read over HTTP(S) or S3: the open source behind each `data.path` that is a URL.
   * The writer reads those tensors through them; closeInput() closes them.
   */
  sources?: Map<string, ByteSource>;
}

/** Close the network sources of a model (a no-op for local inputs). */
export async function closeInput(model: InputModel): Promise<void> {
  for (const s of model.sources?.values() ?? []) await s.close();
  model.sources?.clear();
}
