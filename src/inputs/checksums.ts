/**
 * The SHA-256 of each file of a safetensors checkpoint, where one is known: given on the
 * command line (`--sha256 HEX`, or `--sha256 NAME=HEX` per shard), listed in a `SHA256SUMS`
 * file beside the checkpoint (what `sha256sum` prints), or stated by the server (Hugging
 * Face's X-Linked-Etag, on the redirect of a resolve URL). `load --verify` checks them while
 * the files stream. Nothing here hashes.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { TensorizeError, usageError } from '../errors.js';
import { fsError } from '../sources/file.js';
import { openSource, sourceKind, type SourceOptions } from '../sources/open.js';
import type { SafetensorsCheckpoint } from './safetensors-checkpoint.js';

/** A file's expected SHA-256 and where it was found. */
export interface KnownHash {
  sha256: string;
  /** `--sha256`, `SHA256SUMS (<where>)` or `the server (X-Linked-Etag)`. */
  from: string;
}

/** The checksum file looked for beside a checkpoint. */
export const SUMS_FILE = 'SHA256SUMS';

/** The largest SHA256SUMS read. */
const MAX_SUMS_BYTES = 4 << 20;

const HEX64 = /^[0-9a-fA-F]{64}$/;

/**
 * `sha256sum` output: one `<64 hex> <space><space or *><name>` per line; blank lines and
 * `#` comments skipped. Anything else is an error naming the line: a checksum file that
 * cannot be read as one must not silently verify nothing.
 */
export function parseSha256Sums(text: string, where: string): Map<string, string> {
  const out = new Map<string, string>();
  text.split(/\r?\n/).forEach((line, k) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const m = /^\\?([0-9a-fA-F]{64}) [ *](.+)$/.exec(line);
    if (!m) throw new TensorizeError('E_INPUT', `${where}, line ${k + 1}: not a SHA-256 checksum line ("<64 hex digits>  <file name>"): ${JSON.stringify(line.slice(0, 120))}`);
    const name = m[2]!.replace(/^\.\//, '');
    if (out.has(name) && out.get(name) !== m[1]!.toLowerCase()) throw new TensorizeError('E_INPUT', `${where}, line ${k + 1}: ${name} is listed twice, with different checksums`);
    out.set(name, m[1]!.toLowerCase());
  });
  return out;
}

/** Where the checkpoint's files are named from: its directory (a path, or a URL ending in /). */
function baseOf(c: SafetensorsCheckpoint, input: string): string {
  const remote = sourceKind(input) !== 'file';
  if (c.kind === 'directory') return remote || input.endsWith('/') ? input : `${input}/`;
  const at = c.index ?? c.shards[0]!.name;
  return remote ? new URL('.', at).toString() : `${dirname(at)}/`;
}

/** A shard's name relative to the checkpoint's directory (what SHA256SUMS and --sha256 NAME= use). */
function relName(base: string, shard: string): string {
  if (sourceKind(shard) !== 'file') return decodeURIComponent(shard.startsWith(base) ? shard.slice(base.length) : new URL(shard).pathname.split('/').pop()!);
  return relative(base, shard);
}

/** The SHA256SUMS beside the checkpoint, or undefined when there is none. */
async function readSums(base: string, source: SourceOptions | undefined): Promise<{ sums: Map<string, string>; where: string } | undefined> {
  if (sourceKind(base) === 'file') {
    const p = join(base, SUMS_FILE);
    let text: string;
    try {
      text = await readFile(p, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw fsError(e, p);
    }
    return { sums: parseSha256Sums(text, p), where: p };
  }
  const url = new URL(SUMS_FILE, base).toString();
  let src;
  try {
    src = await openSource(url, source);
  } catch (e) {
    if (e instanceof TensorizeError && e.code === 'E_NOT_FOUND') return undefined;
    throw e;
  }
  try {
    if (src.size > MAX_SUMS_BYTES) throw new TensorizeError('E_INPUT', `${url}: ${src.size} bytes is too large for a checksum file`);
    return { sums: parseSha256Sums((await src.read(0, src.size)).toString('utf8'), url), where: url };
  } finally {
    await src.close();
  }
}

/**
 * Each shard's expected SHA-256, or undefined where none is known. `given`: the --sha256
 * values: one bare HEX for a single-file checkpoint, else NAME=HEX with NAME a shard's name
 * relative to the checkpoint's directory (or its file name); a NAME that is no shard is a
 * usage error. They win over SHA256SUMS, which wins over what the server states.
 */
export async function knownHashes(c: SafetensorsCheckpoint, input: string, given: readonly string[], source?: SourceOptions): Promise<(KnownHash | undefined)[]> {
  const base = baseOf(c, input);
  const names = c.shards.map((s) => relName(base, s.name));
  const out: (KnownHash | undefined)[] = c.shards.map(() => undefined);
  for (const g of given) {
    const eq = g.lastIndexOf('=');
    const [name, hex] = eq < 0 ? [undefined, g] : [g.slice(0, eq), g.slice(eq + 1)];
    if (!HEX64.test(hex)) throw usageError(`--sha256 ${g}: expected 64 hex digits${eq < 0 ? '' : ' after NAME='}`);
    let k: number;
    if (name === undefined) {
      if (c.shards.length !== 1) throw usageError(`--sha256 ${g}: the checkpoint has ${c.shards.length} files; say which with --sha256 NAME=HEX (NAME: ${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''})`);
      k = 0;
    } else {
      k = names.findIndex((n, i) => n === name || basename(n) === name || c.shards[i]!.name === name);
      if (k < 0) throw usageError(`--sha256 ${g}: no file of the checkpoint is named ${JSON.stringify(name)} (its files: ${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''})`);
    }
    out[k] = { sha256: hex.toLowerCase(), from: '--sha256' };
  }
  if (out.some((x) => x === undefined)) {
    const sums = await readSums(base, source);
    names.forEach((n, k) => {
      const h = sums?.sums.get(n);
      if (h && !out[k]) out[k] = { sha256: h, from: `${SUMS_FILE} (${sums!.where})` };
    });
  }
  c.shards.forEach((s, k) => {
    if (!out[k] && s.source.sha256) out[k] = { sha256: s.source.sha256, from: 'the server (X-Linked-Etag)' };
  });
  return out;
}
