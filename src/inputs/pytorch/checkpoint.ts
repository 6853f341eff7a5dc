/**
 * PyTorch checkpoints (torch.save files) as an InputModel: the zip format (torch >= 1.6)
 * and the legacy format (consecutive pickles followed by raw storages). The pickle is
 * parsed in memory by the data-only unpickler; storages are only located, so tensor bytes
 * stream from the file when written. Views are honoured: offset, size and stride become
 * ranges or a strided gather.
 */
import { TensorizeError } from '../../errors.js';
import { formatBytes } from '../../util/units.js';
import type { DTypeInfo } from '../../format/dtypes.js';
import { viewSource } from '../../format/view.js';
import { FileSource } from '../../sources/file.js';
import type { ByteSource } from '../../sources/source.js';
import type { InputModel, InputTensor } from '../model.js';
import { PickleTruncated, PyStorage, PyTensor, PyTuple, storageDtype, unpickle, type PersistentLoad, type PyKey, type PyValue } from './pickle.js';
import { ZipArchive } from './zip.js';

export interface CheckpointOptions {
  /** Dotted path of the sub-tree holding the tensors (e.g. `state_dict`). */
  key?: string;
  /**
   * Write views that repeat storage elements (torch.expand, stride 0) however large they get
   * once every element is written out. Default: refused above EXPANDED_VIEW_LIMIT bytes in all.
   */
  expandViews?: boolean;
}

/**
 * Expanded views (more elements than the storage they span: stride 0, overlapping strides)
 * grow when written out, since the format stores every element: a 655-byte checkpoint can
 * spell a 16 GiB tensor. Above this many bytes of growth in all they are refused unless the
 * caller asks for them (CheckpointOptions.expandViews).
 */
export const EXPANDED_VIEW_LIMIT = 64 * 2 ** 20;

/** Largest pickle read into memory (the tensors' bytes are never read here). */
const MAX_PICKLE_BYTES = 1024 * 1024 * 1024;
export const LEGACY_MAGIC = Buffer.from('80028a0a6cfc9c46f9206aa85019', 'hex');
const LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL_VERSION = 1001;

/** A storage's bytes in the file. */
interface Located {
  offset: number;
  length: number;
}

function perr(src: ByteSource, msg: string, code: 'E_INPUT' | 'E_PICKLE' = 'E_INPUT', hints?: string[]): TensorizeError {
  return new TensorizeError(code, `${src.name}: ${msg}`, { hints });
}

function pidItems(pid: PyValue, n: number[], fail: (m: string) => never): PyValue[] {
  if (!(pid instanceof PyTuple) || !n.includes(pid.items.length) || pid.items[0] !== 'storage') {
    fail(`unexpected persistent id (expected a ('storage', type, key, location, numel) tuple)`);
  }
  return (pid as PyTuple).items;
}

function failer(src: ByteSource, at: number): (m: string) => never {
  return (m: string) => {
    throw new TensorizeError('E_PICKLE', `${src.name} @ pickle byte ${at}: ${m}`);
  };
}

function storageFromPid(src: ByteSource, items: PyValue[], at: number): { storage: PyStorage; root: PyStorage } {
  const fail = failer(src, at);
  const dtype = storageDtype(items[1] ?? null);
  if (!dtype) fail('a persistent id names something that is not a torch storage class');
  const key = items[2];
  if (typeof key !== 'string' || !/^[0-9A-Za-z_.-]{1,64}$/.test(key)) fail('a storage key is not a short string');
  const location = items[3];
  if (typeof location !== 'string') fail('a storage location is not a string');
  const numel = items[4];
  if (typeof numel !== 'number' || !Number.isInteger(numel) || numel < 0) fail('a storage size is not a non-negative integer');
  const root = new PyStorage(key as string, dtype!, numel as number, location as string);
  const view = items[5];
  if (view === undefined || view === null) return { storage: root, root };
  // Legacy storage views: (view_key, offset, size) into the root storage.
  if (!(view instanceof PyTuple) || view.items.length !== 3) fail('a storage view is not a (key, offset, size) tuple');
  const [, off, size] = (view as PyTuple).items;
  if (typeof off !== 'number' || typeof size !== 'number' || !Number.isInteger(off) || !Number.isInteger(size) || off < 0 || size < 0 || off + size > (numel as number)) {
    fail('a storage view lies outside its storage');
  }
  return { storage: new PyStorage(key as string, dtype!, size as number, location as string, off as number), root };
}

/** Unpickle a pickle held in the first part of a source, reading more of it when it turns out longer. */
async function unpickleFrom(
  src: ByteSource,
  start: number,
  persistentLoad: PersistentLoad | undefined,
  what: string,
  cache: { buf: Buffer },
): Promise<{ value: PyValue; end: number }> {
  for (;;) {
    try {
      return unpickle(cache.buf, { start, persistentLoad, name: `${src.name} (${what})` });
    } catch (e) {
      const have = cache.buf.length;
      if (!(e instanceof PickleTruncated) || have >= src.size) throw e;
      const want = Math.min(src.size, Math.max(have * 4, 1024 * 1024));
      if (want > MAX_PICKLE_BYTES) throw perr(src, `the pickle is larger than ${MAX_PICKLE_BYTES} bytes`, 'E_PICKLE');
      cache.buf = await src.read(0, want);
    }
  }
}

/** The byte-swap unit that turns big-endian elements of this dtype into little-endian ones. */
function swapUnit(d: DTypeInfo): number {
  return d.name.startsWith('complex') ? d.itemsize / 2 : d.itemsize;
}

function toInputTensor(src: ByteSource, name: string, t: PyTensor, where: Located, bigEndian: boolean): InputTensor {
  const fail = failer(src, t.at);
  const storageBytes = BigInt(t.storage.numel + t.storage.viewOffset) * BigInt(t.storage.dtype.itemsize);
  if (BigInt(where.length) < storageBytes) {
    fail(`tensor ${JSON.stringify(name)}: storage ${t.storage.key} should hold ${storageBytes} bytes but its record has ${where.length}`);
  }
  const n = t.shape.reduce((a, d) => a * BigInt(d), 1n);
  if (n > 0n) {
    const reach = t.shape.reduce((a, d, i) => a + BigInt(d - 1) * BigInt(t.stride[i]!), BigInt(t.offset)) + 1n;
    const limit = storageBytes / BigInt(t.dtype.itemsize);
    if (reach > limit) {
      fail(`tensor ${JSON.stringify(name)} (size [${t.shape}], stride [${t.stride}], offset ${t.offset}) reaches element ${reach - 1n} of a storage that holds ${limit} ${t.dtype.name} elements`);
    }
  }
  return {
    path: [name],
    dtype: t.dtype,
    shape: t.shape,
    data: viewSource(src.name, where.offset, t.dtype.itemsize, t.offset, t.shape, t.stride, bigEndian ? swapUnit(t.dtype) : undefined),
  };
}

/**
 * Naming tensors through shared containers: a checkpoint may reach one tensor by several
 * names (tied weights), but a few bytes of pickle whose containers share their children can
 * spell 2^30 names. Above this many names, or MAX_NAMES_PER_TENSOR per distinct tensor if
 * that is more, the checkpoint is refused before any name is built.
 */
export const MAX_SHARED_NAMES = 100_000;
const MAX_NAMES_PER_TENSOR = 8;
/** Names of skipped values kept for the warning. */
const MAX_SKIPPED_NAMES = 20;

/**
 * Walk the unpickled object and name every tensor with dotted keys. Each container is
 * summarized once (memoized by identity) before anything is named: how many tensor names it
 * holds, which of its entries hold tensors, which do not. Naming then visits only entries
 * that hold tensors, so the work is bounded by the pickle's size plus the names produced,
 * and shared references cannot multiply it; values that are not tensors are never walked.
 */
export function flattenTensors(root: PyValue, opts: { key?: string; file: string }): { tensors: [string, PyTensor][]; skipped: string[]; skippedCount: number; topLevel: string[] } {
  let node = root;
  if (opts.key !== undefined) {
    for (const part of opts.key.split('.')) {
      const next = child(node, part);
      if (next === undefined) {
        const keys = node instanceof Map ? [...node.keys()].filter((k) => typeof k === 'string').slice(0, 20) : [];
        throw new TensorizeError('E_USAGE', `${opts.file}: --key ${JSON.stringify(opts.key)}: no entry ${JSON.stringify(part)}${keys.length ? ` (found: ${keys.map((k) => JSON.stringify(k)).join(', ')})` : ''}`);
      }
      node = next;
    }
  }
  interface Summary {
    /** Tensor names under this container (saturating at 2^53). */
    names: number;
    /** Its entries in order: key (undefined: not a string or a number), value, whether it holds tensors. */
    entries: [string | undefined, PyValue, boolean][];
    /** The entries that hold tensors. */
    holders: [string, PyValue][];
    /** How many entries hold none. */
    others: number;
  }
  // Counts saturate where they stop being exact; the limit is checked on the total.
  const cap = Number.MAX_SAFE_INTEGER;
  const summaries = new Map<object, Summary>();
  const distinct = new Set<PyTensor>();
  const onPath = new Set<object>();
  const itemsOf = (v: PyValue): [string | undefined, PyValue][] | undefined => {
    if (v instanceof Map) return [...v].map(([k, x]) => [keyName(k), x]);
    if (Array.isArray(v)) return v.map((x, i) => [String(i), x]);
    if (v instanceof PyTuple) return v.items.map((x, i) => [String(i), x]);
    return undefined;
  };
  const namesIn = (v: PyValue, where: () => string, depth: number): number => {
    if (v instanceof PyTensor) {
      distinct.add(v);
      return 1;
    }
    const s = summarize(v, where, depth);
    return s ? s.names : 0;
  };
  const summarize = (v: PyValue, where: () => string, depth: number): Summary | undefined => {
    // A container seen before costs nothing more, whatever its size.
    const known = typeof v === 'object' && v !== null ? summaries.get(v) : undefined;
    if (known) return known;
    const items = itemsOf(v);
    if (!items) return undefined;
    if (onPath.has(v as object)) throw new TensorizeError('E_PICKLE', `${opts.file}: the checkpoint contains a container that holds itself (at ${JSON.stringify(where())})`);
    if (depth > 200) throw new TensorizeError('E_PICKLE', `${opts.file}: containers are nested more than 200 deep`);
    onPath.add(v as object);
    const s: Summary = { names: 0, entries: [], holders: [], others: 0 };
    for (const [k, x] of items) {
      const here = () => {
        const w = where();
        return w ? `${w}.${k}` : k!;
      };
      const n = k === undefined ? 0 : namesIn(x, here, depth + 1);
      s.entries.push([k, x, n > 0]);
      if (n > 0) s.holders.push([k!, x]);
      else s.others++;
      s.names = Math.min(cap, s.names + n);
    }
    onPath.delete(v as object);
    summaries.set(v as object, s);
    return s;
  };
  const total = namesIn(node, () => '', 0);
  const limit = Math.max(MAX_SHARED_NAMES, MAX_NAMES_PER_TENSOR * distinct.size);
  if (total > limit) {
    throw new TensorizeError(
      'E_PICKLE',
      `${opts.file}: the checkpoint's containers share their contents so that its ${distinct.size} tensor(s) would be named ${total >= cap ? 'more than 2^53' : total} times, more than ${limit}; refusing to expand it`,
      { hints: ['a state dict names each tensor once, or a few times for tied weights; this file was not written by torch.save of a model'] },
    );
  }
  // Name the tensors, visiting only entries that hold some.
  const tensors: [string, PyTensor][] = [];
  const skipped: string[] = [];
  let skippedCount = 0;
  const walk = (v: PyValue, name: string[]): void => {
    if (v instanceof PyTensor) {
      tensors.push([name.length ? name.join('.') : 'tensor', v]);
      return;
    }
    const s = summaries.get(v as object);
    if (!s) {
      if (name.length) {
        skippedCount++;
        if (skipped.length < MAX_SKIPPED_NAMES) skipped.push(name.join('.'));
      }
      return;
    }
    skippedCount += s.others;
    // In order while the warning still wants names (each such pass adds one at least, so
    // there are at most 20); after that only the entries that hold tensors.
    if (s.others === 0 || skipped.length >= MAX_SKIPPED_NAMES) {
      for (const [k, x] of s.holders) walk(x, [...name, k]);
      return;
    }
    for (const [k, x, holds] of s.entries) {
      if (holds) walk(x, [...name, k!]);
      else if (skipped.length < MAX_SKIPPED_NAMES) skipped.push(k === undefined ? `${name.join('.')}[<non-string key>]` : [...name, k].join('.'));
    }
  };
  walk(node, []);
  const topLevel = node instanceof Map ? [...node.keys()].map(keyName).filter((k): k is string => k !== undefined) : [];
  return { tensors, skipped, skippedCount, topLevel };
}

/** Bytes a view takes written out, and the bytes of storage it spans. */
function viewBytes(t: PyTensor): { written: bigint; spanned: bigint } {
  const n = t.shape.reduce((a, d) => a * BigInt(d), 1n);
  const item = BigInt(t.dtype.itemsize);
  if (n === 0n) return { written: 0n, spanned: 0n };
  const span = t.shape.reduce((a, d, i) => a + BigInt(d - 1) * BigInt(Math.abs(t.stride[i]!)), 0n) + 1n;
  return { written: n * item, spanned: span * item };
}

/** Refuse (or, when asked for, warn about) views that repeat storage elements. */
function checkExpandedViews(src: ByteSource, tensors: [string, PyTensor][], opts: CheckpointOptions, warnings: string[]): void {
  const expanded = tensors
    .map(([name, t]) => ({ name, t, ...viewBytes(t) }))
    .filter((x) => x.written > x.spanned)
    .sort((a, b) => (b.written - b.spanned > a.written - a.spanned ? 1 : -1));
  if (expanded.length === 0) return;
  const growth = expanded.reduce((n, x) => n + x.written - x.spanned, 0n);
  const top = expanded[0]!;
  const what = `${expanded.length} expanded view(s) (stride 0 or overlapping strides: elements repeated without copies), largest ${JSON.stringify(top.name)} of size [${top.t.shape}] and stride [${top.t.stride}], which spans ${formatBytes(Number(top.spanned))} of storage and takes ${formatBytes(Number(top.written))} written out`;
  if (!opts.expandViews && growth > BigInt(EXPANDED_VIEW_LIMIT)) {
    throw perr(src, `${what}; in all the output would grow by ${formatBytes(Number(growth))}`, 'E_INPUT', [
      'pass --expand-views to write every element anyway (the output grows by that much)',
      'or save the tensor itself rather than an expanded view of it (e.g. t.clone() of the unexpanded tensor)',
    ]);
  }
  warnings.push(`${what}: every element is written, ${formatBytes(Number(growth))} more than the checkpoint stores`);
}

function keyName(k: PyKey): string | undefined {
  if (typeof k === 'string') return k;
  if (typeof k === 'number' || typeof k === 'bigint') return String(k);
  return undefined;
}

function child(node: PyValue, part: string): PyValue | undefined {
  if (node instanceof Map) {
    for (const [k, v] of node) if (keyName(k) === part) return v;
    return undefined;
  }
  const items = Array.isArray(node) ? node : node instanceof PyTuple ? node.items : undefined;
  if (items && /^(0|[1-9][0-9]*)$/.test(part) && Number(part) < items.length) return items[Number(part)];
  return undefined;
}

function buildModel(src: ByteSource, root: PyValue, locate: (s: PyStorage) => Located, bigEndian: boolean, opts: CheckpointOptions, warnings: string[]): InputModel {
  const { tensors, skipped, skippedCount, topLevel } = flattenTensors(root, { key: opts.key, file: src.name });
  if (tensors.length === 0) {
    throw perr(src, `no tensors found${opts.key ? ` under --key ${JSON.stringify(opts.key)}` : ''}`, 'E_INPUT', topLevel.length ? [`top-level keys: ${topLevel.slice(0, 20).join(', ')}`] : []);
  }
  if (skippedCount) {
    warnings.push(`skipped ${skippedCount} non-tensor value(s): ${skipped.slice(0, 8).join(', ')}${skippedCount > 8 ? ', ...' : ''}`);
  }
  if (opts.key === undefined) {
    const holders = new Set(tensors.map(([n]) => n.split('.')[0]!));
    const nested = ['state_dict', 'model', 'model_state_dict', 'module', 'optimizer', 'optimizer_state_dict'].filter((k) => holders.has(k));
    if (nested.length > 1) warnings.push(`tensors are nested under several top-level keys (${[...holders].slice(0, 8).join(', ')}); use --key to pick one, e.g. --key ${nested[0]}`);
  }
  const out = tensors.map(([name, t]) => toInputTensor(src, name, t, locate(t.storage), bigEndian));
  checkExpandedViews(src, tensors, opts, warnings);
  return {
    format: 'pytorch',
    files: [src.name],
    tensors: out,
    metadata: new Map(),
    warnings,
  };
}

async function readZipCheckpoint(src: ByteSource, opts: CheckpointOptions): Promise<InputModel> {
  const zip = await ZipArchive.open(src);
  const first = zip.names[0];
  const slash = first?.indexOf('/') ?? -1;
  if (first === undefined || slash <= 0) throw perr(src, 'the archive has no top-level record folder; it is not a torch.save file');
  const prefix = first.slice(0, slash + 1);
  if (zip.entries.has(`${prefix}constants.pkl`) || zip.names.some((n) => n.startsWith(`${prefix}code/`))) {
    throw new TensorizeError('E_UNSUPPORTED', `${src.name} is a TorchScript archive (torch.jit.save); only torch.save checkpoints are supported`, {
      hints: ['load it in Python and save its state dict: torch.save(torch.jit.load(path).state_dict(), "model.pt")'],
    });
  }
  const pkl = zip.entries.get(`${prefix}data.pkl`);
  if (!pkl) throw perr(src, `the archive has no ${prefix}data.pkl record; it is not a torch.save file`);
  const warnings: string[] = [];
  let bigEndian = false;
  const bo = zip.entries.get(`${prefix}byteorder`);
  if (bo) {
    const s = (await zip.read(bo, 16)).toString('latin1');
    if (s === 'big') bigEndian = true;
    else if (s !== 'little') throw perr(src, `the byteorder record says ${JSON.stringify(s)}, not "little" or "big"`);
  }
  const pickle = await zip.read(pkl, MAX_PICKLE_BYTES);
  const storages = new Map<string, PyStorage>();
  const { value } = unpickle(pickle, {
    name: `${src.name} (${pkl.name})`,
    persistentLoad: (pid, at) => {
      const items = pidItems(pid, [5], failer(src, at));
      const { storage } = storageFromPid(src, items, at);
      if (!zip.entries.has(`${prefix}data/${storage.key}`)) failer(src, at)(`storage ${storage.key} has no ${prefix}data/${storage.key} record`);
      storages.set(storage.key, storage);
      return storage;
    },
  });
  const located = new Map<string, Located>();
  for (const key of storages.keys()) located.set(key, await zip.dataRange(zip.entries.get(`${prefix}data/${key}`)!));
  return buildModel(src, value, (s) => located.get(s.key)!, bigEndian, opts, warnings);
}

async function readLegacyCheckpoint(src: ByteSource, opts: CheckpointOptions): Promise<InputModel> {
  const cache = { buf: await src.read(0, Math.min(src.size, 1024 * 1024)) };
  const magic = await unpickleFrom(src, 0, undefined, 'magic number', cache);
  if (magic.value !== LEGACY_MAGIC_NUMBER) throw perr(src, 'not a legacy torch.save file (wrong magic number)');
  const proto = await unpickleFrom(src, magic.end, undefined, 'protocol version', cache);
  if (proto.value !== LEGACY_PROTOCOL_VERSION) throw perr(src, `legacy protocol version ${String(proto.value)} is not supported (expected ${LEGACY_PROTOCOL_VERSION})`);
  const sys = await unpickleFrom(src, proto.end, undefined, 'sys_info', cache);
  if (!(sys.value instanceof Map)) throw perr(src, 'the sys_info record is not a dict', 'E_PICKLE');
  if (sys.value.get('little_endian') !== true) {
    throw new TensorizeError('E_UNSUPPORTED', `${src.name} was saved on a big-endian machine in the legacy format; only little-endian legacy checkpoints are supported`);
  }
  const roots = new Map<string, PyStorage>();
  const main = await unpickleFrom(
    src,
    sys.end,
    (pid, at) => {
      const items = pidItems(pid, [6], failer(src, at));
      const { storage, root } = storageFromPid(src, items, at);
      const prev = roots.get(root.key);
      if (prev && (prev.dtype !== root.dtype || prev.numel !== root.numel)) failer(src, at)(`storage ${root.key} is described twice with different types or sizes`);
      if (!prev) roots.set(root.key, root);
      return storage;
    },
    'data',
    cache,
  );
  const keysPickle = await unpickleFrom(src, main.end, undefined, 'storage keys', cache);
  const keys = keysPickle.value;
  if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string')) throw perr(src, 'the storage key list is not a list of strings', 'E_PICKLE');
  const located = new Map<string, Located>();
  let pos = keysPickle.end;
  for (const key of keys as string[]) {
    const root = roots.get(key);
    if (!root) throw perr(src, `storage ${key} is listed but no tensor uses it`);
    if (located.has(key)) throw perr(src, `storage ${key} is listed twice`);
    if (pos + 8 > src.size) throw perr(src, `storage ${key}: its size field at byte ${pos} is past the end of the file; the file is truncated`);
    const count = (await src.read(pos, 8)).readBigInt64LE(0);
    if (count !== BigInt(root.numel)) throw perr(src, `storage ${key} at byte ${pos} holds ${count} elements, but the pickle says ${root.numel}`);
    const length = root.numel * root.dtype.itemsize;
    if (pos + 8 + length > src.size) throw perr(src, `storage ${key} (${length} bytes at ${pos + 8}) runs past the end of the ${src.size}-byte file; the file is truncated`);
    located.set(key, { offset: pos + 8, length });
    pos += 8 + length;
  }
  for (const key of roots.keys()) if (!located.has(key)) throw perr(src, `storage ${key} is used by a tensor but its data is missing`);
  const warnings: string[] = [];
  if (pos !== src.size) warnings.push(`${src.name}: ${src.size - pos} unexpected bytes after the last storage are ignored`);
  return buildModel(src, main.value, (s) => located.get(s.key)!, false, opts, warnings);
}

/** What kind of PyTorch file the first bytes suggest, if any. */
export function sniffPytorch(head: Buffer): 'zip' | 'legacy' | 'tar' | 'pickle' | undefined {
  if (head.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1'))) return 'zip';
  if (head.subarray(0, LEGACY_MAGIC.length).equals(LEGACY_MAGIC)) return 'legacy';
  if (head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar') return 'tar';
  if (head[0] === 0x80 && head[1] !== undefined && head[1] >= 2 && head[1] <= 5) return 'pickle';
  return undefined;
}

/** Open a torch.save file (zip or legacy) as an InputModel; `source` as for openSafetensorsFile. */
export async function openPytorchFile(path: string, opts: CheckpointOptions = {}, source?: ByteSource): Promise<InputModel> {
  const src = source ?? (await FileSource.open(path));
  try {
    const head = await src.read(0, Math.min(src.size, 512));
    const kind = sniffPytorch(head);
    if (kind === 'zip') return await readZipCheckpoint(src, opts);
    if (kind === 'legacy') return await readLegacyCheckpoint(src, opts);
    if (kind === 'tar') {
      throw new TensorizeError('E_UNSUPPORTED', `${path} is a pre-1.0 PyTorch tar checkpoint; this format is not supported`, {
        hints: ['load it with an old torch and re-save it: torch.save(torch.load(path), "model.pt")'],
      });
    }
    if (kind === 'pickle') {
      throw new TensorizeError('E_UNSUPPORTED', `${path} is a bare pickle, not a torch.save checkpoint (no zip archive and no legacy magic number)`);
    }
    throw perr(src, 'not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save file)');
  } finally {
    if (!source) await src.close();
  }
}
