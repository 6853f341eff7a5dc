/**
 * Encrypted jobs of local files (TransferOptions.crypt and .seal) as the copy engine and the
 * stream path take them: each job's entry with its key, the jobs they can be (one range, not
 * byte-swapped), and why the JavaScript worker pool refuses them.
 */
import { TensorizeError } from '../errors.js';
import type { SourceData } from '../format/view.js';
import type { StreamJob } from './job.js';
import type { TransferOptions } from './transfer.js';

/** Why the worker pool cannot run an encrypted job, and what to do. */
export function jsEncrypted(view: boolean): TensorizeError {
  return new TensorizeError(
    'E_UNSUPPORTED',
    view ? 'a strided (non-contiguous) tensor cannot be encrypted or decrypted on the way' : 'encrypted tensors are decrypted and encrypted by the native copy engine only',
    { hints: view ? ['make the tensor contiguous before saving it, or serialize without encryption'] : ['build the native addon (npm run build:native) and unset TENSORIZE_ENGINE=js'] },
  );
}

/**
 * Job k's entries of TransferOptions.crypt and .seal, with their keys. An encrypted or
 * sealed job must be one range of a file, not byte-swapped: E_UNSUPPORTED otherwise.
 */
export function encryptionOf(opts: TransferOptions, k: number, d: SourceData, name: string | undefined): Pick<StreamJob, 'crypt' | 'seal'> {
  const c = opts.crypt?.items[k] ?? undefined;
  const s = opts.seal?.items[k] ?? undefined;
  if (!c && !s) return {};
  const what = name === undefined ? `job ${k}` : `tensor ${JSON.stringify(name)}`;
  if (c && s) throw new TensorizeError('E_NATIVE', `${what} is both decrypted and encrypted`);
  if (d.view || d.ranges.length !== 1 || (d.swap ?? 1) > 1) {
    throw new TensorizeError('E_UNSUPPORTED', `${what}: only contiguous tensors stored in native byte order can be encrypted or decrypted on the way (this one is ${d.view ? 'strided' : d.ranges.length !== 1 ? `${d.ranges.length} ranges` : 'byte-swapped'})`, {
      hints: ['serialize it without encryption, or make it contiguous and little-endian first'],
    });
  }
  const keyOf = (keys: readonly Buffer[], i: number) => {
    const key = keys[i];
    if (!key) throw new TensorizeError('E_NATIVE', `${what}: encryption key #${i} was not given`);
    return key;
  };
  if (c) return { crypt: { ...c, key: keyOf(opts.crypt!.keys, c.key) } };
  return { seal: { ...s!, key: keyOf(opts.seal!.keys, s!.key) } };
}

/** E_NATIVE unless TransferOptions.crypt and .seal have one entry per job. */
export function checkPlans(opts: TransferOptions, jobs: number): void {
  for (const [name, p] of [['crypt', opts.crypt], ['seal', opts.seal]] as const) {
    if (p && p.items.length !== jobs) throw new TensorizeError('E_NATIVE', `${name} has ${p.items.length} entries for ${jobs} jobs`);
  }
}
