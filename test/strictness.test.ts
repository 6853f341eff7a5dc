/**
 * One strictness for every command: a file that `verify` rejects is rejected by `load`
 * (with --verify; copying and --mmap) and by `export`, with the same error, before anything
 * is handed out or written. Damage that is visible without hashes (the end of the file) is
 * rejected by a plain `load` too. Each case is a defect that once passed silently
 * (issue #12, items 1-6); the files come from the independent builder in helpers/.
 */
import t, { type Test } from 'tap';
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, f32, type BuildOpts, type Built, type Rec } from './helpers/tensors-builder.js';
import { bytes, runCli } from './helpers/util.js';

const MiB = 1 << 20;

/** The commands that read tensors, each as the CLI runs it. */
function commands(file: string, dir: string): Record<string, string[]> {
  return {
    verify: ['verify', file],
    'load --verify': ['load', file, '--device', 'cpu', '--verify'],
    'load --plaid --verify': ['load', file, '--device', 'cpu', '--plaid', '--verify'],
    'load --mmap --verify': ['load', file, '--mmap', '--verify'],
    export: ['export', file, '-o', join(dir, 'out.safetensors')],
    'export --meta zeros': ['export', file, '-o', join(dir, 'out.safetensors'), '--meta', 'zeros'],
  };
}

function errorLine(stderr: string): string {
  return stderr.split('\n').find((l) => l.startsWith('tensorize: error: ')) ?? `(no error line in: ${stderr.trim().slice(0, 500)})`;
}

/**
 * Every command rejects `b` with exit 1 and the error line verify prints (which must match
 * `why`); none leaves an output file. `extra` commands must reject it the same way too.
 */
async function rejectedEverywhere(t: Test, b: Built | Buffer, why: RegExp, extra?: (file: string, dir: string) => Record<string, string[]>): Promise<void> {
  const dir = t.testdir({});
  const file = join(dir, 'bad.tensors');
  writeFileSync(file, Buffer.isBuffer(b) ? b : b.buf);
  const cmds = { ...commands(file, dir), ...extra?.(file, dir) };
  const v = await runCli(cmds.verify!);
  t.equal(v.code, 1, `verify exits 1: ${v.stderr}`);
  const expected = errorLine(v.stderr);
  t.match(expected, why, 'verify says what is wrong');
  t.match(expected, file, 'and names the file');
  for (const [name, args] of Object.entries(cmds)) {
    if (name === 'verify') continue;
    const r = await runCli(args);
    t.equal(r.code, 1, `${name} exits 1: ${r.stderr.trim().slice(0, 300)}`);
    t.equal(errorLine(r.stderr), expected, `${name} reports what verify reports`);
    t.notOk(/"ok": true|^device /m.test(r.stdout), `${name} hands nothing out`);
  }
  t.same(readdirSync(dir).sort(), ['bad.tensors'], 'no output or temporary file is left');
}

/** Commands that do not check hashes: they still see damage at the end of the file. */
const plainCommands = (file: string, dir: string): Record<string, string[]> => ({
  load: ['load', file, '--device', 'cpu'],
  'load --mmap': ['load', file, '--mmap'],
  'export --no-verify': ['export', file, '-o', join(dir, 'out.safetensors'), '--no-verify'],
});

/** A 2 MiB tensor between two small ones; `over` changes what a test needs. */
function model(over: (recs: Rec[]) => void = () => {}): Rec[] {
  const recs: Rec[] = [
    { name: 'a', shape: [2, 3], data: f32(0, 1, 2, 3, 4, 5) },
    { name: 'big', shape: [512, 1024], data: bytes(2 * MiB, 7) },
    { name: 'c', dtype: '<i2', shape: [3], data: Buffer.from([1, 0, 2, 0, 3, 0]) },
  ];
  over(recs);
  return recs;
}

t.test('the controls load and export', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'good.tensors');
  writeFileSync(file, build(model(), { trailer: true }).buf);
  for (const [name, args] of Object.entries(commands(file, dir))) {
    const r = await runCli(args);
    t.equal(r.code, 0, `${name}: ${r.stderr}`);
  }
  const meta = join(dir, 'meta.tensors');
  writeFileSync(meta, build([...model(), { name: 'm', shape: [4], data: Buffer.alloc(0) }], { version: 4, trailer: true }).buf);
  for (const [name, args] of Object.entries(commands(meta, dir))) {
    const r = await runCli(args);
    t.equal(r.code, 0, `with a meta tensor, ${name}: ${r.stderr}`);
  }
  // tensorizer's 0-dim meta quirk: the index reserves one item, the header says 0 bytes.
  const quirk = join(dir, 'quirk.tensors');
  writeFileSync(quirk, build([...model(), { name: 's', shape: [], data: Buffer.alloc(4), hdr: { dataLength: 0n } }], { version: 4, trailer: true }).buf);
  // The builder hashed the header with data length 0 and the 4 data bytes; a meta tensor's
  // hash covers its header alone, so rebuild that one's hashes over the header only.
  const q = build([...model(), { name: 's', shape: [], data: Buffer.alloc(0), hdr: { dataLength: 0n } }], { version: 4 });
  const qb = readFileSync(quirk);
  const rec = q.recs[3]!;
  for (const h of rec.hashValues) q.buf.copy(qb, h.off, h.off, h.off + h.len);
  writeFileSync(quirk, qb);
  const r = await runCli(['verify', quirk]);
  t.equal(r.code, 0, `a scalar meta tensor over a 4-byte hole verifies: ${r.stderr}`);
});

t.test('1. an index entry with data length 0 while the header says 2 MiB', async (t) => {
  // The last record, so that the index stays contiguous: the 2 MiB then trail the index's end.
  const b = build(model((r) => {
    const big = r.splice(1, 1)[0]!;
    r.push({ ...big, idx: { dataLength: 0n } });
  }), { version: 4 });
  await rejectedEverywhere(t, b, /data length \(2097152\) disagrees with the index \(0\)/);
});

t.test('2. the tensor count lowered', async (t) => {
  await rejectedEverywhere(t, build(model(), { count: 1n, trailer: true }), /unexpected bytes follow the last tensor record/, plainCommands);
  // one bit of the count flipped (3 -> 2)
  await rejectedEverywhere(t, build(model(), { count: 2n, trailer: true }), /unexpected bytes follow the last tensor record/);
});

t.test('3. a tensor header whose data length is 0 (index unchanged)', async (t) => {
  await rejectedEverywhere(t, build(model((r) => (r[1]!.hdr = { dataLength: 0n })), { version: 4, trailer: true }), /data length \(0\) disagrees with the index \(2097152\)/);
});

t.test('4. a tensor without hashes whose data was changed', async (t) => {
  const b = build(model((r) => (r[1]!.hdr = { hashes: [] })), { trailer: true });
  b.buf[b.recs[1]!.dataOffset + 1000] ^= 0xff;
  await rejectedEverywhere(t, b, /"big" \(#1\) stores no hashes, so its data cannot be checked/);
  // Asked for explicitly, export copies the bytes as they are.
  const dir = t.testdir({});
  const file = join(dir, 'nohash.tensors');
  writeFileSync(file, b.buf);
  const r = await runCli(['export', file, '-o', join(dir, 'out.safetensors'), '--no-verify']);
  t.equal(r.code, 0, `export --no-verify: ${r.stderr}`);
});

t.test('5. meta tensors: their headers and header-only hashes are checked', async (t) => {
  const withMeta = (hdr: Rec['hdr']) => build([...model(), { name: 'm', shape: [4], data: Buffer.alloc(0), hdr }], { version: 4, trailer: true });
  const crc = withMeta(undefined);
  crc.buf[crc.recs[3]!.hashValues[0]!.off] ^= 0x01;
  await rejectedEverywhere(t, crc, /tensor "m" does not match its stored CRC32$/);
  const sha = withMeta(undefined);
  sha.buf[sha.recs[3]!.hashValues[1]!.off + 31] ^= 0x80;
  await rejectedEverywhere(t, sha, /tensor "m" does not match its stored SHA-256$/);
  await rejectedEverywhere(t, withMeta({ sizeField: 1n << 63n }), /header size 9223372036854775808 disagrees with the index/);
  await rejectedEverywhere(t, withMeta({ shape: [2, 2] }), /shape \(\[2,2\]\) disagrees with the index \(\[4\]\)/);
  await rejectedEverywhere(t, withMeta({ dataLength: 16n }), /data length \(16\) disagrees with the index \(0\)/);
});

t.test('6. a file cut short inside the end marker, and one with bytes appended', async (t) => {
  const cut = build(model(), { trailer: true }).buf;
  await rejectedEverywhere(t, cut.subarray(0, cut.length - 1), /ends 7 bytes into tensorizer's 8-byte end marker/, plainCommands);
  await rejectedEverywhere(t, Buffer.concat([cut, Buffer.from([1])]), /9 unexpected bytes follow the last tensor record/, plainCommands);
  const marker = Buffer.from(cut);
  marker[marker.length - 3] = 1;
  await rejectedEverywhere(t, marker, /are not tensorizer's zero end marker/, plainCommands);
});

t.test('7. data version 5 (docs/format.md §4.1): read by every command; its faults rejected by all of them', async (t) => {
  const LONG = 2 ** 32;
  const v5 = (over: (recs: Rec[]) => void = () => {}, o: BuildOpts = {}) =>
    build(model((r) => {
      r.splice(1, 0, { name: 'long', shape: [LONG, 0], data: Buffer.alloc(0) });
      over(r);
    }), { version: 5, flags: 2n, trailer: true, ...o });
  const dir = t.testdir({});
  const file = join(dir, 'good.tensors');
  writeFileSync(file, v5().buf);
  for (const [name, args] of Object.entries({ ...commands(file, dir), ...plainCommands(file, dir), info: ['info', file] })) {
    const r = await runCli(args);
    t.equal(r.code, 0, `${name} reads a v5 file: ${r.stderr}`);
  }
  const info = await runCli(['info', file, '--json']);
  t.match(JSON.parse(info.stdout), { dataVersion: 5, flags: '0x2', tensors: [{ name: 'a' }, { name: 'long', shape: [LONG, 0], bytes: 0 }, { name: 'big' }, { name: 'c' }] }, 'info shows the long shape');
  const withIndex = (f: string, d: string) => ({ ...plainCommands(f, d), info: ['info', f] });
  await rejectedEverywhere(t, v5((r) => (r[1]!.idx = { tag: 2 })), /metadata entry 1: unknown entry version tag 2/, withIndex);
  await rejectedEverywhere(t, build(model(), { version: 4, flags: 2n, trailer: true }), /feature flags 0x2 at byte 9: bit 1 \(tagged index entries\) belongs to data version 5/, withIndex);
  await rejectedEverywhere(t, v5(undefined, { flags: 6n }), /unknown feature flags 0x6 at byte 9/, withIndex);
  await rejectedEverywhere(t, v5((r) => (r[1]!.shape = [2 ** 62, 2 ** 62, 2])), /shape \[4611686018427387904,4611686018427387904,2\] of float32 would be \d+ bytes; refusing such an absurdly large tensor/, withIndex);
  await rejectedEverywhere(t, v5((r) => (r[1]!.hdr = { shape: [LONG + 1, 0] })), /the tensor header's shape \(\[4294967297,0\]\) disagrees with the index \(\[4294967296,0\]\)/);
  const flipped = v5();
  flipped.buf[flipped.recs[2]!.dataOffset + 7] ^= 0x01;
  await rejectedEverywhere(t, flipped.buf, /tensor "big" does not match its stored CRC32 and SHA-256$/);
});

t.test('a flipped data byte, alone and with a fault of structure', async (t) => {
  const flipped = () => {
    const b = build(model(), { trailer: true });
    b.buf[b.recs[1]!.dataOffset + 12345] ^= 0x01;
    return b.buf;
  };
  await rejectedEverywhere(t, flipped(), /tensor "big" does not match its stored CRC32 and SHA-256$/);
  // Two faults: verify lists both in its report, and its error is the fault of structure,
  // which load and export meet first; all of them say the same.
  await rejectedEverywhere(t, Buffer.concat([flipped(), Buffer.from([9])]), /9 unexpected bytes follow the last tensor record/);
  const v = await runCli(['verify', join(t.testdir({ 'x.tensors': Buffer.concat([flipped(), Buffer.from([9])]) }), 'x.tensors')]);
  t.match(v.stdout, /FAILED: tensor "big" \(#1\): CRC32 mismatch/, 'verify still reports the hash failure');
});

t.test('info shows the index of a file cut short in its data, then exits 1', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'cut.tensors');
  const b = build(model(), { trailer: true });
  writeFileSync(file, b.buf);
  truncateSync(file, b.recs[1]!.dataOffset + 100);
  const r = await runCli(['info', file]);
  t.equal(r.code, 1, r.stderr);
  t.match(r.stdout, /big\s+param\s+float32\s+\[512, 1024\]\s+2097152/, 'the index is shown');
  t.match(r.stdout, /^c\s/m, 'all of it');
  t.match(errorLine(r.stderr), /tensor "big".*runs past the end of the 476-byte file; the file was cut short/);
  const j = await runCli(['info', file, '--json']);
  t.equal(j.code, 1);
  const doc = JSON.parse(j.stdout);
  t.equal(doc.ok, false);
  t.equal(doc.tensors.length, 3);
  t.match(doc.problems[0], /runs past the end/);
  t.notOk(existsSync(join(dir, 'out.safetensors')));
});
