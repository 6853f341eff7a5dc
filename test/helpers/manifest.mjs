// The reference vectors' manifests, and one check of a loaded model against one.
//
// Each vector `<name>.tensors` in ../shared/vectors has a manifest `<name>.json`: for every
// tensor its name (a string, or a structured path as an array), type, dtype, shape, byte
// count and the SHA-256 of its bytes, or `meta: true` for a tensor stored without data.
// manifestProblems() compares a loaded model (load() of the library, from src/ under tap or
// from dist/ under plain node) with one and says, one line each, everything that disagrees.
//
// Plain ESM JavaScript, no dependencies beyond Node, so that scripts/device/gpu-check.mjs
// (run by plain node on the GPU machine, where there is no TypeScript loader) imports it as
// the tap tests do. It is a tracked file, so it travels to that machine with the working
// tree (scripts/device/pack.sh checks that). Types: manifest.d.mts.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const sha256 = (b) => createHash('sha256').update(b).digest('hex');

/** The manifest of vector `file` (`x.tensors` -> `x.json`) in the folder `vectors`. */
export function readManifest(vectors, file) {
  return JSON.parse(readFileSync(join(vectors, file.replace(/\.tensors$/, '.json')), 'utf8'));
}

/** A manifest name as load() names the tensor: a structured path is its JSON text. */
export function tensorName(name) {
  return typeof name === 'string' ? name : JSON.stringify(name);
}

/**
 * Everything about `model` that disagrees with `manifest`, one line per problem, each
 * naming the tensor; an empty list when the model holds exactly the manifest's tensors with
 * the same type, dtype and shape, meta tensors as meta, and every other tensor's bytes
 * (model.read()) hashing to the manifest's SHA-256; and model.stats.bytes is the sum of
 * their sizes. Options: `view` also hashes model.view() (host loads); `align` requires each
 * tensor with data to start at a multiple of that many bytes of its allocation.
 */
export function manifestProblems(model, manifest, opts = {}) {
  const problems = [];
  const byName = new Map(model.tensors.map((x) => [x.name, x]));
  const wanted = new Set(manifest.tensors.map((w) => tensorName(w.name)));
  if (model.tensors.length !== manifest.tensors.length) problems.push(`${model.tensors.length} tensors loaded, the manifest lists ${manifest.tensors.length}`);
  for (const x of model.tensors) if (!wanted.has(x.name)) problems.push(`${x.name}: loaded, but not in the manifest`);
  let bytes = 0;
  for (const want of manifest.tensors) {
    const name = tensorName(want.name);
    const got = byName.get(name);
    if (!got) {
      problems.push(`${name}: missing`);
      continue;
    }
    if (want.type !== undefined && got.type !== want.type) problems.push(`${name}: type ${got.type}, the manifest says ${want.type}`);
    if (got.dtype !== want.dtype) problems.push(`${name}: dtype ${got.dtype}, the manifest says ${want.dtype}`);
    if (JSON.stringify(got.shape) !== JSON.stringify(want.shape)) problems.push(`${name}: shape ${JSON.stringify(got.shape)}, the manifest says ${JSON.stringify(want.shape)}`);
    if (want.meta) {
      if (got.device !== 'meta' || !got.meta) problems.push(`${name}: a meta tensor in the manifest, loaded to ${got.device}`);
      continue;
    }
    if (got.meta || got.device === 'meta') {
      problems.push(`${name}: loaded as a meta tensor, the manifest has its bytes`);
      continue;
    }
    bytes += want.nbytes;
    if (got.bytes !== want.nbytes) problems.push(`${name}: ${got.bytes} bytes, the manifest says ${want.nbytes}`);
    if (opts.align && got.offset % opts.align !== 0) problems.push(`${name}: at offset ${got.offset}, not a multiple of ${opts.align}`);
    const read = sha256(model.read(name));
    if (read !== want.sha256) problems.push(`${name}: read() bytes have SHA-256 ${read}, the manifest says ${want.sha256}`);
    if (opts.view) {
      const view = sha256(model.view(name));
      if (view !== want.sha256) problems.push(`${name}: view() bytes have SHA-256 ${view}, the manifest says ${want.sha256}`);
    }
  }
  if (model.stats && model.stats.bytes !== bytes) problems.push(`stats.bytes is ${model.stats.bytes}, the manifest's tensors hold ${bytes}`);
  return problems;
}
