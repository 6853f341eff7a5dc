/** Types of manifest.mjs (the reference vectors' manifests, and one check of a loaded model against one). */

/** One tensor of a vector's manifest (`<name>.json` beside `<name>.tensors`). */
export interface ManifestTensor {
  /** A string, or a structured path. */
  name: string | (string | number)[];
  type?: string;
  dtype: string;
  shape: number[];
  /** Absent for meta tensors. */
  nbytes?: number;
  sha256?: string;
  meta?: boolean;
}

export interface Manifest {
  file?: string;
  data_version?: number;
  tensors: ManifestTensor[];
}

/** What manifestProblems() needs of a loaded model (LoadedModel of src/ops/load.ts has it). */
export interface LoadedLike {
  tensors: readonly { name: string; type: string; dtype: string; shape: readonly number[]; device: string; offset: number; bytes: number; meta: boolean }[];
  read(name: string): Uint8Array;
  view?(name: string): Uint8Array;
  stats?: { bytes: number };
}

export interface ManifestCheckOptions {
  /** Also hash model.view() of each tensor (host loads). */
  view?: boolean;
  /** Each tensor with data must start at a multiple of this many bytes. */
  align?: number;
}

/** The manifest of vector `file` (`x.tensors` -> `x.json`) in the folder `vectors`. */
export function readManifest(vectors: string, file: string): Manifest;

/** A manifest name as load() names the tensor: a structured path is its JSON text. */
export function tensorName(name: ManifestTensor['name']): string;

/** Everything about `model` that disagrees with `manifest`, one line per problem; empty when all agree. */
export function manifestProblems(model: LoadedLike, manifest: Manifest, opts?: ManifestCheckOptions): string[];
