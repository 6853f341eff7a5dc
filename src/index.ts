/** Library entry point. */
export { ERROR_CODES, TensorizeError, type ErrorCode } from './errors.js';
export { TensorType, HashType } from './format/constants.js';
export { allDtypes, dtypeByName, dtypeBySafetensors, parseTensorizerDtype, type DTypeInfo } from './format/dtypes.js';
export { decodePath, encodePath, pathToString, type TensorPath, type PathComponent } from './format/paths.js';
export { TensorizerFile, type TensorEntry, type FileInfo } from './format/reader.js';
export { writeTensorizer, type WriteOptions, type WriteSummary } from './ops/serialize.js';
export type { WriteTensor } from './format/encode.js';
export type { EncryptionOptions } from './ops/encrypt.js';
export { verifyFile, type VerifyResult, type VerifyOptions } from './ops/verify.js';
export { readKeySource, type DecryptionOptions, type KeySourceOptions } from './ops/decrypt.js';
export type { HashFailure } from './format/check.js';
export { exportSafetensors, type ExportOptions, type ExportSummary } from './ops/export.js';
export { openInput, type InputModel, type InputTensor } from './inputs/index.js';
export { readSafetensorsHeader } from './inputs/safetensors.js';
export { FileSource } from './sources/file.js';
export { HttpSource, type HttpOptions } from './sources/http.js';
export { S3Source, makeS3Client, type S3Options } from './sources/s3.js';
export { openSource, type SourceOptions } from './sources/open.js';
export type { ByteSource } from './sources/source.js';
export { load, LoadedModel, type LoadOptions, type LoadedTensor, type LoadStats, type NetworkStats } from './ops/load.js';
export { nativeInfo, type NativeReport } from './native/report.js';
export { writeSyntheticSafetensors, transformerSpec } from './ops/synthetic.js';
export { openPytorchFile, type CheckpointOptions } from './inputs/pytorch/checkpoint.js';
export { unpickle, isAllowedGlobal } from './inputs/pytorch/pickle.js';
export { parseSize } from './util/units.js';
export {
  runBench,
  measure as measureBenchTask,
  prepareBenchSource,
  renderHtml,
  renderSvg,
  formatText as formatBenchText,
  evictFromPageCache,
  pageCacheResidency,
  type BenchOptions,
  type BenchResult,
  type BenchEntry,
  type ExtraMethod,
  type PreparedSource,
  type Sample as BenchSample,
  type Task as BenchTask,
} from './bench/index.js';
