/**
 * A data-only unpickler for PyTorch checkpoints. Nothing in the file is ever called:
 * GLOBAL resolves only names on an allowlist into inert tokens, REDUCE / NEWOBJ / BUILD
 * apply only the handful of constructors torch's own `weights_only` loader accepts (dicts,
 * the tensor rebuild functions, torch.Size, ...), and every other global is refused with
 * its name and byte offset. Dicts become Maps, never plain objects keyed by untrusted
 * strings. Stack, memo, nesting and string sizes are bounded.
 */
import { TensorizeError } from '../../errors.js';
import { dtypeByName, type DTypeInfo } from '../../format/dtypes.js';

/** A value the unpickler produces. */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PyBytes
  | PyValue[]
  | PyTuple
  | Map<PyKey, PyValue>
  | PySet
  | PyGlobal
  | PyStorage
  | PyTensor
  | PyDtype;

export type PyKey = string | number | bigint | boolean | null | PyValue;

export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}
export class PyBytes {
  constructor(readonly bytes: Uint8Array) {}
}
export class PySet {
  constructor(readonly items: PyValue[]) {}
}
/** An allowlisted global, as an inert token. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}
export class PyDtype {
  constructor(readonly dtype: DTypeInfo) {}
}
/** A storage as the checkpoint's persistent_load describes it; bytes are located by the container. */
export class PyStorage {
  constructor(
    /** The record key (zip) or root key (legacy). */
    readonly key: string,
    /** Element type of the storage class (uint8 for UntypedStorage). */
    readonly dtype: DTypeInfo,
    /** Number of elements of `dtype`. */
    readonly numel: number,
    readonly location: string,
    /** Element offset into the root storage (legacy storage views), else 0. */
    readonly viewOffset = 0,
  ) {}
}
export class PyTensor {
  constructor(
    readonly storage: PyStorage,
    readonly dtype: DTypeInfo,
    /** Offset into the storage, in elements of `dtype`. */
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
    /** Where the rebuild call was in the pickle, for messages. */
    readonly at: number,
  ) {}
}

export interface UnpickleLimits {
  maxDepth: number;
  maxMemo: number;
  maxStack: number;
  maxString: number;
}

export const DEFAULT_LIMITS: UnpickleLimits = {
  maxDepth: 1000,
  maxMemo: 10_000_000,
  maxStack: 10_000_000,
  maxString: 256 * 1024 * 1024,
};

/** Resolves a persistent id (the tuple after BINPERSID) to a value, normally a PyStorage. */
export type PersistentLoad = (pid: PyValue, at: number) => PyValue;

export class PickleTruncated extends TensorizeError {}

const STORAGE_DTYPES: ReadonlyMap<string, string> = new Map([
  ['FloatStorage', 'float32'],
  ['DoubleStorage', 'float64'],
  ['HalfStorage', 'float16'],
  ['BFloat16Storage', 'bfloat16'],
  ['LongStorage', 'int64'],
  ['IntStorage', 'int32'],
  ['ShortStorage', 'int16'],
  ['CharStorage', 'int8'],
  ['ByteStorage', 'uint8'],
  ['BoolStorage', 'bool'],
  ['ComplexFloatStorage', 'complex64'],
  ['ComplexDoubleStorage', 'complex128'],
  ['UntypedStorage', 'uint8'],
]);

/** The dtype a storage-class global stands for, or undefined when it is not a storage class. */
export function storageDtype(g: PyValue): DTypeInfo | undefined {
  if (!(g instanceof PyGlobal) || g.module !== 'torch') return undefined;
  const n = STORAGE_DTYPES.get(g.name);
  return n === undefined ? undefined : dtypeByName(n);
}

/** torch dtype globals (`torch.float16`, ...) that map to a known element type. */
const DTYPE_ALIASES: ReadonlyMap<string, string> = new Map([
  ['float', 'float32'],
  ['double', 'float64'],
  ['half', 'float16'],
  ['long', 'int64'],
  ['int', 'int32'],
  ['short', 'int16'],
  ['cfloat', 'complex64'],
  ['cdouble', 'complex128'],
  ['chalf', 'complex32'],
]);

const CALLABLES = new Set([
  'collections.OrderedDict',
  'collections.Counter',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor_v3',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2',
  'torch.Size',
  'torch.device',
  'torch.Tensor',
  'torch.nn.parameter.Parameter',
  '_codecs.encode',
  'builtins.set',
  'builtins.frozenset',
  'builtins.bytearray',
  'builtins.slice',
]);

/** Is `module.name` a global this unpickler accepts? */
export function isAllowedGlobal(module: string, name: string): boolean {
  const q = `${module}.${name}`;
  if (CALLABLES.has(q)) return true;
  if (module === 'torch' && (STORAGE_DTYPES.has(name) || DTYPE_ALIASES.has(name) || dtypeByName(name) !== undefined)) return true;
  return false;
}

const MARK = Symbol('mark');
type Slot = PyValue | typeof MARK;

/** Decode the pickle that starts at `start` of `buf`; returns the value and where STOP ended. */
export function unpickle(
  buf: Uint8Array,
  opts: { start?: number; persistentLoad?: PersistentLoad; limits?: Partial<UnpickleLimits>; name?: string } = {},
): { value: PyValue; end: number } {
  const lim = { ...DEFAULT_LIMITS, ...opts.limits };
  const name = opts.name ?? 'pickle';
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const stack: Slot[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = opts.start ?? 0;
  let op = pos;

  const fail = (msg: string, code: 'E_PICKLE' | 'E_PICKLE_GLOBAL' = 'E_PICKLE'): never => {
    throw new TensorizeError(code, `${name} @ byte ${op}: ${msg}`);
  };
  const need = (n: number): void => {
    if (n > buf.length - pos) {
      throw new PickleTruncated('E_PICKLE', `${name} @ byte ${op}: the pickle is truncated (needs ${n} more bytes at byte ${pos}, ${buf.length - pos} left)`);
    }
  };
  const u8 = (): number => {
    need(1);
    return buf[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`length ${v} is absurd`);
    return Number(v);
  };
  const take = (n: number): Uint8Array => {
    if (n > lim.maxString) fail(`a ${n}-byte string or bytes object exceeds the ${lim.maxString}-byte limit`);
    need(n);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const text = (n: number): string => {
    const b = take(n);
    try {
      return utf8.decode(b);
    } catch {
      return fail('a string is not valid UTF-8');
    }
  };
  const latin1 = (n: number): string => Buffer.from(take(n)).toString('latin1');
  const line = (): string => {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0 || nl - pos > 4096) need(buf.length - pos + 1);
    const s = Buffer.from(buf.subarray(pos, nl)).toString('latin1');
    pos = nl + 1;
    return s;
  };
  const push = (v: PyValue): void => {
    if (stack.length >= lim.maxStack) fail(`the stack grew past ${lim.maxStack} items`);
    stack.push(v);
  };
  const pop = (): PyValue => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1]!)) fail('stack underflow');
    const v = stack.pop()!;
    return v as PyValue;
  };
  const top = (): PyValue => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1]!)) fail('stack underflow');
    return stack[stack.length - 1] as PyValue;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) fail('no MARK on the stack');
    const items = stack.splice(m!) as PyValue[];
    return items;
  };
  const pushMark = (): void => {
    if (marks.length >= lim.maxDepth) fail(`more than ${lim.maxDepth} nested MARKs`);
    marks.push(stack.length);
  };
  const memoPut = (i: number, v: PyValue): void => {
    if (!memo.has(i) && memo.size >= lim.maxMemo) fail(`the memo grew past ${lim.maxMemo} entries`);
    memo.set(i, v);
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) fail(`memo entry ${i} is read before it is written`);
    return memo.get(i)!;
  };
  const intLE = (b: Uint8Array): number | bigint => {
    // signed two's complement, little-endian
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b.length && b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const global = (module: string, gname: string): PyGlobal | PyDtype => {
    if (!isAllowedGlobal(module, gname)) {
      fail(`refused global ${module}.${gname}: only plain tensors, dicts and lists may appear in a checkpoint; nothing in it is executed`, 'E_PICKLE_GLOBAL');
    }
    if (module === 'torch' && !STORAGE_DTYPES.has(gname)) {
      const d = dtypeByName(DTYPE_ALIASES.get(gname) ?? gname);
      if (d) return new PyDtype(d);
    }
    return new PyGlobal(module, gname);
  };
  const setItem = (d: PyValue, k: PyValue, v: PyValue): void => {
    if (!(d instanceof Map)) fail('SETITEM on something that is not a dict');
    (d as Map<PyKey, PyValue>).set(k, v);
  };
  const dictFrom = (items: PyValue[]): Map<PyKey, PyValue> => {
    if (items.length % 2) fail('odd number of items for a dict');
    const d = new Map<PyKey, PyValue>();
    for (let i = 0; i < items.length; i += 2) d.set(items[i]!, items[i + 1]!);
    return d;
  };

  for (;;) {
    op = pos;
    const code = u8();
    switch (code) {
      case 0x80: // PROTO
        if (u8() > 5) fail('unsupported pickle protocol');
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: {
        // STOP
        if (marks.length) fail('MARK left open at STOP');
        if (stack.length !== 1) fail(`STOP with ${stack.length} items on the stack (expected 1)`);
        return { value: stack[0] as PyValue, end: pos };
      }
      case 0x28: // MARK
        pushMark();
        break;
      case 0x30: // POP
        if (marks.length && stack.length === marks[marks.length - 1]) marks.pop();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT
        need(4);
        push(dv.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: // LONG1
        push(intLE(take(u8())));
        break;
      case 0x8b: {
        // LONG4
        need(4);
        const n = dv.getInt32(pos, true);
        pos += 4;
        if (n < 0) fail('LONG4 with a negative length');
        if (n > 1024) fail(`a ${n}-byte integer is absurd`);
        push(intLE(take(n)));
        break;
      }
      case 0x47: {
        // BINFLOAT (big-endian)
        need(8);
        push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x8c: // SHORT_BINUNICODE
        push(text(u8()));
        break;
      case 0x58: // BINUNICODE
        push(text(u32()));
        break;
      case 0x8d: // BINUNICODE8
        push(text(u64()));
        break;
      case 0x55: // SHORT_BINSTRING
        push(latin1(u8()));
        break;
      case 0x54: {
        // BINSTRING
        need(4);
        const n = dv.getInt32(pos, true);
        pos += 4;
        if (n < 0) fail('BINSTRING with a negative length');
        push(latin1(n));
        break;
      }
      case 0x43: // SHORT_BINBYTES
        push(new PyBytes(take(u8())));
        break;
      case 0x42: // BINBYTES
        push(new PyBytes(take(u32())));
        break;
      case 0x8e: // BINBYTES8
        push(new PyBytes(take(u64())));
        break;
      case 0x96: // BYTEARRAY8
        push(new PyBytes(take(u64())));
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]));
        break;
      case 0x74: // TUPLE
        push(new PyTuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        push(new PyTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        push(new PyTuple([a, b, c]));
        break;
      }
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) fail('APPEND to something that is not a list');
        (l as PyValue[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) fail('APPENDS to something that is not a list');
        for (const v of items) (l as PyValue[]).push(v);
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x64: // DICT
        push(dictFrom(popMark()));
        break;
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItem(top(), k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        const d = top();
        if (items.length % 2) fail('SETITEMS with an odd number of items');
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i]!, items[i + 1]!);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new PySet([]));
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof PySet)) fail('ADDITEMS to something that is not a set');
        (s as PySet).items.push(...items);
        break;
      }
      case 0x91: // FROZENSET
        push(new PySet(popMark()));
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const gname = line();
        push(global(module, gname));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const gname = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof gname !== 'string') fail('STACK_GLOBAL needs two strings');
        push(global(module as string, gname as string));
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) fail('a persistent id outside a checkpoint container');
        push(opts.persistentLoad!(pid, op));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        push(call(fn, args, op, fail));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        push(call(cls, args, op, fail));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        pop(); // kwargs
        const args = pop();
        const cls = pop();
        push(call(cls, args, op, fail));
        break;
      }
      case 0x62: {
        // BUILD: only state that does not matter for tensor data
        pop();
        const obj = top();
        if (obj instanceof PyTensor || obj instanceof Map) break; // Parameter/OrderedDict attributes: ignored
        fail('BUILD on an object that is not a tensor or a dict');
        break;
      }
      case 0x71: // BINPUT
        memoPut(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size, top());
        break;
      case 0x68: // BINGET
        push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(memoGet(u32()));
        break;
      default:
        fail(`unsupported pickle opcode 0x${code.toString(16).padStart(2, '0')}${code >= 0x20 && code < 0x7f ? ` (${JSON.stringify(String.fromCharCode(code))})` : ''}; only the binary opcodes torch.save writes are accepted`);
    }
  }
}

const asInt = (v: PyValue): number | undefined => (typeof v === 'number' && Number.isInteger(v) ? v : undefined);

function ints(v: PyValue, what: string, fail: (m: string) => never): number[] {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : fail(`${what} is not a tuple`);
  return items.map((x) => {
    const n = asInt(x);
    if (n === undefined || n < 0) fail(`${what} holds ${typeof x === 'bigint' ? x.toString() : JSON.stringify(x)}, not a non-negative integer`);
    return n!;
  });
}

function tupleItems(args: PyValue, fail: (m: string) => never): PyValue[] {
  if (!(args instanceof PyTuple)) fail('call arguments are not a tuple');
  return (args as PyTuple).items;
}

function rebuildTensor(a: PyValue[], dtype: DTypeInfo | undefined, at: number, fail: (m: string) => never): PyTensor {
  const storage = a[0];
  if (!(storage instanceof PyStorage)) return fail('a tensor rebuild call does not name a storage');
  const offset = asInt(a[1] ?? null);
  if (offset === undefined || offset < 0) fail('tensor storage offset is not a non-negative integer');
  const shape = ints(a[2] ?? null, 'tensor size', fail);
  const stride = ints(a[3] ?? null, 'tensor stride', fail);
  if (shape.length !== stride.length) fail(`tensor size has ${shape.length} dimensions but stride has ${stride.length}`);
  return new PyTensor(storage, dtype ?? storage.dtype, offset! + storage.viewOffset, shape, stride, at);
}

/** Apply an allowlisted callable. Nothing from the file runs: each case builds a plain value. */
function call(fn: PyValue, args: PyValue, at: number, fail: (m: string) => never): PyValue {
  if (!(fn instanceof PyGlobal)) return fail('REDUCE/NEWOBJ on something that is not an allowlisted global');
  const a = tupleItems(args, fail);
  switch (fn.qualified) {
    case 'collections.OrderedDict':
    case 'collections.Counter': {
      const d = new Map<PyKey, PyValue>();
      const init = a[0];
      if (init instanceof Map) for (const [k, v] of init) d.set(k, v);
      else if (Array.isArray(init) || init instanceof PyTuple) {
        for (const kv of Array.isArray(init) ? init : init.items) {
          const pair = kv instanceof PyTuple ? kv.items : Array.isArray(kv) ? kv : fail('OrderedDict items are not pairs');
          if (pair.length !== 2) fail('OrderedDict items are not pairs');
          d.set(pair[0]!, pair[1]!);
        }
      } else if (init !== undefined && init !== null) fail('OrderedDict with an unsupported argument');
      return d;
    }
    case 'torch._utils._rebuild_tensor_v2':
      if (a.length < 6 || a.length > 7) fail(`_rebuild_tensor_v2 takes 6 or 7 arguments, got ${a.length}`);
      return rebuildTensor(a, undefined, at, fail);
    case 'torch._utils._rebuild_tensor_v3': {
      if (a.length < 7 || a.length > 8) fail(`_rebuild_tensor_v3 takes 7 or 8 arguments, got ${a.length}`);
      const dt = a[6];
      if (!(dt instanceof PyDtype)) fail('_rebuild_tensor_v3 without a dtype');
      return rebuildTensor(a, (dt as PyDtype).dtype, at, fail);
    }
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state':
      if (!(a[0] instanceof PyTensor)) fail(`${fn.name} of something that is not a tensor`);
      return a[0]!;
    case 'torch._tensor._rebuild_from_type_v2': {
      // (func, new_type, args, state): the tensor subclass is dropped, the data kept.
      const [inner, type, innerArgs] = a;
      if (!(type instanceof PyGlobal) || (type.qualified !== 'torch.Tensor' && type.qualified !== 'torch.nn.parameter.Parameter')) {
        fail('_rebuild_from_type_v2 with a tensor subclass other than Tensor or Parameter');
      }
      return call(inner ?? null, innerArgs ?? null, at, fail);
    }
    case 'torch.nn.parameter.Parameter':
      if (!(a[0] instanceof PyTensor)) fail('Parameter of something that is not a tensor');
      return a[0]!;
    case 'torch.Size':
      return new PyTuple(ints(a[0] ?? new PyTuple([]), 'torch.Size', fail));
    case 'torch.device':
      if (typeof a[0] !== 'string') fail('torch.device of something that is not a string');
      return a[1] === undefined || a[1] === null ? a[0]! : `${a[0]}:${String(a[1])}`;
    case '_codecs.encode': {
      if (typeof a[0] !== 'string') fail('_codecs.encode of something that is not a string');
      const enc = a[1] ?? 'utf-8';
      if (enc !== 'latin1' && enc !== 'latin-1' && enc !== 'utf-8' && enc !== 'utf8') fail(`_codecs.encode with the encoding ${String(enc)}`);
      return new PyBytes(Buffer.from(a[0] as string, enc === 'latin1' || enc === 'latin-1' ? 'latin1' : 'utf8'));
    }
    case 'builtins.set':
    case 'builtins.frozenset': {
      const init = a[0];
      return new PySet(init === undefined ? [] : Array.isArray(init) ? [...init] : init instanceof PyTuple ? [...init.items] : fail('set of something that is not a list'));
    }
    case 'builtins.bytearray':
      if (a.length === 0) return new PyBytes(new Uint8Array());
      if (a[0] instanceof PyBytes) return a[0];
      return fail('bytearray of something that is not bytes');
    case 'builtins.slice':
      return new PyTuple(a);
    default:
      return fail(`${fn.qualified} may not be called`);
  }
}
