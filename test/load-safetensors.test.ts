// load of a stock .safetensors file, as it is (issue #16, first part): every tensor's bytes
// in every host mode (--plaid, simple, --mmap) against the file's own, at the unaligned
// offsets safetensors packs them at; the header rejected with serialize's exact error before
// anything is allocated; --verify, --filter, and a file that is neither format.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dtypeBySafetensors } from '../src/format/dtypes.js';
import { nativeAvailable } from '../src/native/binding.js';
import { load } from '../src/ops/load.js';
import { startHttpServer } from './helpers/servers.js';
import { bytes, runCli, sha256, writeSafetensors, type StTensor } from './helpers/util.js';

const why = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';
const dir = mkdtempSync(join(tmpdir(), 'tz-load-st-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

// Odd sizes, so that most tensors start at offsets that are not multiples of 8.
const tensors: StTensor[] = [
  { name: 'embed.weight', dtype: 'F32', shape: [3, 5], data: bytes(60, 1) },
  { name: 'norm', dtype: 'BF16', shape: [7], data: bytes(14, 2) },
  { name: 'ids', dtype: 'U8', shape: [3], data: bytes(3, 3) },
  { name: 'proj', dtype: 'F64', shape: [2, 2], data: bytes(32, 4) },
  { name: 'empty', dtype: 'F16', shape: [0, 4], data: Buffer.alloc(0) },
  { name: 'mask', dtype: 'BOOL', shape: [5], data: bytes(5, 5) },
  { name: 'scale', dtype: 'F8_E4M3', shape: [9], data: bytes(9, 6) },
  { name: 'packed', dtype: 'F4', shape: [6], data: bytes(3, 7) },
  { name: 'big', dtype: 'I64', shape: [4, 33], data: bytes(8 * 132, 8) },
];
const file = join(dir, 'model.safetensors');
writeSafetensors(file, tensors, { format: 'pt' });

t.test('every host mode loads each tensor byte for byte, at any offset', { skip: why }, async (t) => {
  for (const [how, opts] of [
    ['--plaid', { device: 'cpu', plaid: true }],
    ['simple', { device: 'cpu', plaid: false }],
    ['--mmap', { mmap: true }],
  ] as const) {
    const m = await load(file, opts);
    try {
      t.same(m.tensors.map((x) => x.name), tensors.map((x) => x.name), `${how}: every tensor, in file order`);
      for (const want of tensors) {
        const got = m.tensors.find((x) => x.name === want.name)!;
        t.same([got.dtype, got.shape, got.bytes], [dtypeBySafetensors(want.dtype)?.name ?? want.dtype, want.shape, want.data.length], `${how}: ${want.name}: dtype, shape, size`);
        t.equal(sha256(m.read(want.name)), sha256(want.data), `${how}: ${want.name}: its bytes`);
        if (want.data.length) t.equal(sha256(m.view(want.name)), sha256(want.data), `${how}: ${want.name}: the zero-copy view`);
        if (how !== '--mmap') t.equal(got.offset % 256, 0, `${how}: ${want.name} placed at an aligned offset of the allocation`);
      }
      t.equal(m.stats.bytes, tensors.reduce((n, x) => n + x.data.length, 0), `${how}: every byte counted`);
      if (how === '--mmap') t.ok(m.stats.misaligned > 0, '--mmap counts the tensors at offsets no multiple of their element size');
    } finally {
      m.close();
    }
  }
});

t.test('from HTTP: the same bytes, through the native fetcher', { skip: why }, async (t) => {
  const server = await startHttpServer(dir);
  t.teardown(() => server.close());
  const m = await load(`${server.url}/model.safetensors`, { device: 'cpu' });
  try {
    for (const want of tensors) t.equal(sha256(m.read(want.name)), sha256(want.data), want.name);
  } finally {
    m.close();
  }
});

t.test('--filter, --verify, a file that is neither format', { skip: why }, async (t) => {
  const m = await load(file, { device: 'cpu', filter: 'embed.*' });
  t.same(m.tensors.map((x) => x.name), ['embed.weight']);
  t.equal(m.stats.skipped, tensors.length - 1);
  m.close();
  const v = await runCli(['load', file, '--verify', '--device', 'cpu']);
  t.equal(v.code, 2, '--verify: a usage error');
  t.match(v.stderr, /--verify: no SHA-256 is known for .*model\.safetensors \(safetensors holds no hashes\)\n.*hint: give it: --sha256 HEX/);
  const other = join(dir, 'notes.txt');
  writeFileSync(other, '{"this": "is json, not a model"}\n');
  const r = await runCli(['load', other, '--device', 'cpu']);
  t.equal(r.code, 1);
  t.match(r.stderr, /notes\.txt is not a tensorizer file \(it does not start with "\|TZR\|"\)/, 'neither format: the same error as before');
});

t.test('a bad header: load fails with the error serialize gives, before anything is allocated', { skip: why }, async (t) => {
  const cases: [string, (h: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void][] = [
    ['overlapping tensors', (h) => (h.norm!.data_offsets = [50, 64])],
    ['a size that disagrees with dtype x shape', (h) => (h.ids!.shape = [4])],
    ['an unknown dtype', (h) => (h.proj!.dtype = 'F128')],
    ['a gap', (h) => (h.big!.data_offsets = [h.big!.data_offsets[0]! + 8, h.big!.data_offsets[1]! + 8])],
  ];
  for (const [what, edit] of cases) {
    const f = join(dir, `bad-${what.replace(/\W+/g, '-')}.safetensors`);
    let pos = 0;
    const header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }> = {};
    for (const x of tensors) header[x.name] = { dtype: x.dtype, shape: x.shape, data_offsets: [pos, (pos += x.data.length)] };
    edit(header);
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(f, Buffer.concat([len, json, ...tensors.map((x) => x.data)]));
    const l = await runCli(['load', f, '--device', 'cpu']);
    const s = await runCli(['serialize', f, '-o', join(dir, 'out.tensors')]);
    t.equal(l.code, 1, `${what}: load exits 1`);
    t.match(l.stderr, /^tensorize: error: .*\.safetensors: /, `${what}: a clear error`);
    t.equal(l.stderr.split('\n')[0], s.stderr.split('\n')[0], `${what}: the same error as serialize`);
    t.notMatch(l.stderr, /allocat|device memory/, `${what}: nothing was allocated`);
  }
});
