// The data-only unpickler on hand-assembled pickles: the opcodes torch writes decode to
// the right values, dicts stay Maps, and everything that could run code or exhaust memory
// is refused with a TensorizeError naming the problem and its byte offset.
import t from 'tap';
import { join } from 'node:path';
import { TensorizeError } from '../src/errors.js';
import { PyBytes, PyDtype, PyStorage, PyTensor, PyTuple, unpickle, type PyValue } from '../src/inputs/pytorch/pickle.js';
import { ZipArchive } from '../src/inputs/pytorch/zip.js';
import { FileSource } from '../src/sources/file.js';
import { P, pickleDict, tensorV2 } from './helpers/pickle.js';
import { ROOT } from './helpers/util.js';

const pk = (...parts: (Buffer | string)[]): Buffer => Buffer.concat([P.proto, ...parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)), P.stop]);
const value = (b: Buffer, persistentLoad?: (pid: PyValue) => PyValue): PyValue => unpickle(b, { persistentLoad }).value;

t.test('scalars, strings and containers', async (t) => {
  t.equal(value(pk('N')), null);
  t.equal(value(pk('\x88')), true);
  t.equal(value(pk('K\xff')), 255);
  t.equal(value(pk('M\xff\xff')), 65535);
  t.equal(value(pk('J\xfe\xff\xff\xff')), -2);
  t.equal(value(pk('\x8a\x05\x00\xa2\x2f\x4d\xff')), -3000000000, 'LONG1 is signed');
  t.equal(value(pk('\x8a\x00')), 0, 'LONG1 of zero bytes');
  t.equal(value(pk('\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19')), 0x1950a86a20f9469cfc6cn, 'the legacy magic as a BigInt');
  t.equal(value(pk('\x8b\x02\x00\x00\x00\xff\x7f')), 32767, 'LONG4');
  t.equal(value(pk('G\x40\x09\x21\xfb\x54\x44\x2d\x18')), Math.PI, 'BINFLOAT is big-endian');
  t.equal(value(pk(P.str('naïve 名前'))), 'naïve 名前');
  t.equal(value(pk('\x8c\x02hi')), 'hi', 'SHORT_BINUNICODE');
  t.equal(value(pk('U\x03abc')), 'abc', 'SHORT_BINSTRING');
  t.same((value(pk('C\x02\x01\x02')) as PyBytes).bytes, new Uint8Array([1, 2]), 'SHORT_BINBYTES');
  const tup = value(pk('K\x01K\x02\x86')) as PyTuple;
  t.ok(tup instanceof PyTuple);
  t.same(tup.items, [1, 2]);
  t.same(value(pk(']', '(K\x01K\x02e')), [1, 2], 'EMPTY_LIST + APPENDS');
  t.same(value(pk('(K\x01K\x02l')), [1, 2], 'LIST');
  const memo = value(pk(']q\x00', 'h\x00', 'a')) as PyValue[];
  t.equal(memo[0], memo, 'BINGET returns the same object');
  const enc = value(pk(P.global('_codecs', 'encode'), P.str('\u00ff\u0001'), P.str('latin1'), '\x86R')) as PyBytes;
  t.same(enc.bytes, new Uint8Array([0xff, 1]), 'bytes through _codecs.encode');
});

t.test('dicts are Maps: untrusted keys never touch object prototypes', async (t) => {
  const d = value(pk('}(', P.str('__proto__'), 'K\x01', P.str('constructor'), 'K\x02', P.str('x'), 'K\x03u')) as Map<string, PyValue>;
  t.ok(d instanceof Map);
  t.same([...d.entries()], [['__proto__', 1], ['constructor', 2], ['x', 3]]);
  t.equal(Object.getPrototypeOf(d), Map.prototype);
  t.equal(({} as Record<string, unknown>).x, undefined, 'Object.prototype untouched');
  const od = value(pk(P.global('collections', 'OrderedDict'), ')R', '(', P.str('a'), 'K\x01u')) as Map<string, PyValue>;
  t.same([...od], [['a', 1]], 'OrderedDict() then SETITEMS');
});

t.test('tensors: rebuild functions over persistent storages, Parameter, v3 dtypes', async (t) => {
  const loads: PyValue[] = [];
  const pl = (pid: PyValue): PyValue => {
    loads.push(pid);
    const items = (pid as PyTuple).items;
    return new PyStorage(items[2] as string, { name: 'float32', itemsize: 4, tensorizer: '<f4', opaque: false }, items[4] as number, 'cpu');
  };
  const tensor = tensorV2('FloatStorage', '0', 12, 2, [2, 3], [1, 2]);
  const v = value(pickleDict([['w', tensor]]), pl) as Map<string, PyValue>;
  const w = v.get('w') as PyTensor;
  t.ok(w instanceof PyTensor);
  t.same({ offset: w.offset, shape: w.shape, stride: w.stride, key: w.storage.key }, { offset: 2, shape: [2, 3], stride: [1, 2], key: '0' });
  t.equal(loads.length, 1);
  const param = value(pk(P.global('torch._utils', '_rebuild_parameter'), '(', tensor, '\x89', P.global('collections', 'OrderedDict'), ')R', 't', 'R'), pl);
  t.ok(param instanceof PyTensor, 'a Parameter is its tensor');
  const dt = value(pk(P.global('torch', 'float8_e4m3fn')));
  t.ok(dt instanceof PyDtype);
  t.equal((dt as PyDtype).dtype.name, 'float8_e4m3fn');
});

t.test('refusals: code-running globals, calls, opcodes', async (t) => {
  const refuse = (b: Buffer, code: string, msg: RegExp, what: string): void => {
    t.throws(() => unpickle(b), { code, message: msg }, what);
  };
  refuse(pk(P.global('os', 'system'), P.str('touch /tmp/x'), '\x85R'), 'E_PICKLE_GLOBAL', /pickle @ byte 2: refused global os\.system/, 'os.system');
  refuse(pk(P.global('posix', 'system')), 'E_PICKLE_GLOBAL', /refused global posix\.system/, 'posix.system');
  refuse(pk(P.str('builtins'), P.str('eval'), '\x93'), 'E_PICKLE_GLOBAL', /refused global builtins\.eval/, 'STACK_GLOBAL builtins.eval');
  refuse(pk(P.global('builtins', 'getattr')), 'E_PICKLE_GLOBAL', /builtins\.getattr/, 'getattr');
  refuse(pk(P.global('torch', 'load')), 'E_PICKLE_GLOBAL', /torch\.load/, 'torch.load');
  refuse(pk(P.global('torch._utils', '_rebuild_qtensor')), 'E_PICKLE_GLOBAL', /_rebuild_qtensor/, 'quantized tensors');
  refuse(pk(P.global('numpy.core.multiarray', '_reconstruct')), 'E_PICKLE_GLOBAL', /numpy/, 'numpy objects');
  refuse(pk(P.global('__main__', 'Model')), 'E_PICKLE_GLOBAL', /__main__\.Model/, 'arbitrary classes');
  refuse(pk(P.global('torch', 'FloatStorage'), ')R'), 'E_PICKLE', /torch\.FloatStorage may not be called/, 'calling a storage class');
  refuse(pk(P.global('torch', 'float32'), ')R'), 'E_PICKLE', /not an allowlisted global/, 'calling a dtype');
  refuse(pk(P.str('x'), ')R'), 'E_PICKLE', /not an allowlisted global/, 'calling a string');
  refuse(pk('ios\nsystem\n'), 'E_PICKLE', /unsupported pickle opcode 0x69 \("i"\)/, 'INST');
  refuse(pk('I1\n'), 'E_PICKLE', /opcode 0x49/, 'text INT');
  refuse(pk('P1\n'), 'E_PICKLE', /opcode 0x50/, 'text PERSID');
  refuse(pk('K\x01', '\x85', 'N', 'b'), 'E_PICKLE', /BUILD on an object that is not a tensor or a dict/, 'BUILD on a tuple');
  refuse(pk(tensorV2('FloatStorage', '0', 1, 0, [1], [1])), 'E_PICKLE', /persistent id outside a checkpoint/, 'persistent ids need a container');
});

t.test('malformed pickles and limits: errors, not crashes or huge allocations', async (t) => {
  const bad = (b: Buffer, msg: RegExp, what: string, limits = {}): void => {
    t.throws(() => unpickle(b, { limits }), { code: 'E_PICKLE', message: msg }, what);
  };
  const rss = process.memoryUsage().rss;
  bad(Buffer.from('\x80\x02\x8b\x00\x00\x00\x80', 'latin1'), /a 2147483648|negative length/, 'LONG4 of 2^31 bytes');
  bad(Buffer.from('\x80\x02\x8b\xff\xff\xff\x7f', 'latin1'), /2147483647-byte integer is absurd/, 'LONG4 of 2^31-1 bytes');
  bad(Buffer.from('\x80\x02X\xff\xff\xff\xff', 'latin1'), /truncated|limit/, 'BINUNICODE of 4 GiB');
  bad(Buffer.from('\x80\x02\x8d\xff\xff\xff\xff\xff\xff\x00\x00', 'latin1'), /truncated|limit/, 'BINUNICODE8 of 2^48 bytes');
  bad(Buffer.from('\x80\x02\x8e\xff\xff\xff\xff\xff\xff\xff\xff', 'latin1'), /absurd/, 'BINBYTES8 of 2^64 bytes');
  t.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024, 'no large allocation');
  bad(Buffer.from('\x80\x02' + '('.repeat(2000) + '.', 'latin1'), /more than 1000 nested MARKs/, 'deep MARKs');
  bad(Buffer.from('\x80\x02h\x05.', 'latin1'), /memo entry 5 is read before it is written/, 'BINGET before BINPUT');
  bad(Buffer.from('\x80\x02.', 'latin1'), /STOP with 0 items/, 'empty STOP');
  bad(Buffer.from('\x80\x02K\x01K\x02.', 'latin1'), /STOP with 2 items/, 'two values at STOP');
  bad(Buffer.from('\x80\x02a.', 'latin1'), /stack underflow/, 'APPEND on an empty stack');
  bad(Buffer.from('\x80\x02(K\x01s.', 'latin1'), /stack underflow/, 'SETITEM across a MARK');
  bad(Buffer.from('\x80\x02K\x01K\x02a.', 'latin1'), /APPEND to something that is not a list/, 'APPEND to an int');
  bad(Buffer.from('\x80\x02(K\x01.', 'latin1'), /MARK left open/, 'open MARK at STOP');
  bad(Buffer.from('\x80\x02K\x01', 'latin1'), /truncated/, 'no STOP');
  bad(Buffer.from('\x80\x09N.', 'latin1'), /unsupported pickle protocol/, 'protocol 9');
  bad(Buffer.from('\x80\x02X\x02\x00\x00\x00\xff\xfe.', 'latin1'), /not valid UTF-8/, 'bad UTF-8');
  bad(Buffer.from('\x80\x02' + ']q\x00'.repeat(1) + 'K\x01'.repeat(100) + '.', 'latin1'), /the stack grew past 50 items/, 'stack limit', { maxStack: 50 });
  bad(Buffer.from('\x80\x02]' + 'q\x00r\x01\x00\x00\x00r\x02\x00\x00\x00' + '.', 'latin1'), /the memo grew past 2 entries/, 'memo limit', { maxMemo: 2 });
  bad(Buffer.from('\x80\x02X\x10\x00\x00\x00' + 'a'.repeat(16) + '.', 'latin1'), /16-byte string or bytes object exceeds the 8-byte limit/, 'string limit', { maxString: 8 });
});

t.test('every truncation and many bit flips of a real data.pkl fail cleanly or decode', async (t) => {
  const src = await FileSource.open(join(ROOT, 'fixtures', 'pytorch', 'zip.pt'));
  t.teardown(() => src.close());
  const zip = await ZipArchive.open(src);
  const pkl = await zip.read(zip.entries.get('zip/data.pkl')!, 1 << 20);
  const pl = (_pid: PyValue): PyValue => new PyStorage('0', { name: 'float32', itemsize: 4, tensorizer: '<f4', opaque: false }, 1 << 20, 'cpu');
  t.ok(unpickle(pkl, { persistentLoad: pl }).value instanceof Map, 'the intact pickle decodes');
  let errors = 0;
  for (let n = 0; n < pkl.length; n++) {
    try {
      unpickle(pkl.subarray(0, n), { persistentLoad: pl });
      t.fail(`decoded when cut to ${n} bytes`);
    } catch (e) {
      if (!(e instanceof TensorizeError) || e.code !== 'E_PICKLE') t.fail(`cut to ${n}: ${String(e)}`);
      else errors++;
    }
  }
  t.equal(errors, pkl.length, `${pkl.length} truncations, each an E_PICKLE error`);
  let seed = 7;
  let flips = 0;
  for (let i = 0; i < 3000; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const b = Buffer.from(pkl);
    b[seed % b.length]! ^= 1 << ((seed >>> 16) & 7);
    try {
      unpickle(b, { persistentLoad: pl });
    } catch (e) {
      if (!(e instanceof TensorizeError)) t.fail(`bit flip ${i}: ${String(e)}`);
      else flips++;
    }
  }
  t.ok(flips > 0, `${flips} of 3000 bit flips rejected, the rest decoded; none crashed`);
});
