// The native loader (tensorize load): host-memory loads of the reference vectors checked
// byte for byte against their manifests, in every mode (--mmap included); zero-copy views
// of host loads; --filter, --verify catching corruption, files that change during a load;
// the native pipeline test program; and GPU
// loads when this machine has a usable device (skipped with the reason otherwise).
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileFilter, load } from '../src/loader/load.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { BIN, bytes, ROOT, sha256, VECTORS, writeSafetensors, type StTensor } from './helpers/util.js';

const available = nativeAvailable();
const why = available ? false : 'the native addon is not built (npm run build:native)';
const info = available ? native().info() : undefined;
const gpu = info && info.deviceCount > 0 ? false : `no usable CUDA device (${info?.noDeviceReason || 'native addon not built'})`;
// On a GPU machine, a missing device must fail the run rather than skip the GPU tests.
if (gpu && process.env.TENSORIZE_REQUIRE_GPU === '1') t.fail(`TENSORIZE_REQUIRE_GPU=1, but ${gpu}`);

interface Manifest {
  tensors: { name: string | (string | number)[]; sha256?: string; nbytes?: number; meta?: boolean }[];
}
const vectors = readdirSync(VECTORS).filter((f) => f.endsWith('.tensors') && !f.startsWith('encrypted')).sort();
const manifestOf = (f: string): Manifest => JSON.parse(readFileSync(join(VECTORS, f.replace(/\.tensors$/, '.json')), 'utf8'));
const nameOf = (n: string | (string | number)[]): string => (typeof n === 'string' ? n : JSON.stringify(n));

async function checkVector(t: Test, f: string, device: string, plaid: boolean, readers: number, chunkSize: number, verify: boolean, mmap = false): Promise<void> {
  const m = manifestOf(f);
  const model = await load(join(VECTORS, f), { device, plaid, readers, chunkSize, verify, mmap });
  try {
    t.equal(model.tensors.length, m.tensors.length, `${f}: tensor count`);
    for (const want of m.tensors) {
      const got = model.tensors.find((x) => x.name === nameOf(want.name));
      if (!got) {
        t.fail(`${f}: ${nameOf(want.name)} missing`);
        continue;
      }
      if (want.meta) {
        t.equal(got.device, 'meta', `${f}: ${got.name} is meta`);
        continue;
      }
      if (!mmap) t.equal(got.offset % 256, 0, 'aligned');
      const how = `${f} ${device} plaid=${plaid} mmap=${mmap} readers=${readers} chunk=${chunkSize} verify=${verify}: ${got.name}`;
      t.equal(sha256(model.read(got.name)), want.sha256, how);
      if (device === 'cpu') t.equal(sha256(model.view(got.name)), want.sha256, `${how} (view)`);
    }
    t.equal(model.stats.bytes, m.tensors.reduce((n, x) => n + (x.meta ? 0 : x.nbytes ?? 0), 0), 'bytes');
  } finally {
    model.close();
  }
}

t.test('host loads of every reference vector match the manifests, in every mode', { skip: why }, async (t) => {
  for (const f of vectors) {
    for (const [plaid, readers, chunk, verify] of [
      [true, 4, 4096, true],
      [true, 1, 1 << 20, false],
      [false, 1, 1 << 20, true],
      [true, 3, 8192, false],
    ] as const) {
      await checkVector(t, f, 'cpu', plaid, readers, chunk, verify);
    }
    await checkVector(t, f, 'cpu', false, 4, 4096, true, true);
    await checkVector(t, f, 'cpu', false, 1, 1 << 20, false, true);
  }
});

t.test('report: timings, sizes and peak RSS are filled in', { skip: why }, async (t) => {
  const model = await load(join(VECTORS, 'many_tensors.tensors'), { device: 'cpu', plaid: true, readers: 2 });
  const s = model.stats;
  model.close();
  t.ok(s.openMs > 0 && s.transferMs > 0 && s.totalMs >= s.openMs, 'timings');
  t.ok(s.firstTensorMs >= s.openMs && s.firstTensorMs <= s.totalMs, 'first tensor within the load');
  t.ok(s.hostBytes >= s.bytes && s.pinnedBytes === 0 && s.deviceBytes === 0, 'host destination, no ring for host loads');
  t.throws(() => model.read(model.tensors[0]!.name), { code: 'E_USAGE' }, 'closed models cannot be read');
});

t.test('view() is the loaded memory itself, and outlives close()', { skip: why }, async (t) => {
  const f = join(VECTORS, 'many_tensors.tensors');
  const model = await load(f, { device: 'cpu', plaid: true });
  const name = model.tensors.find((x) => x.bytes >= 2)!.name;
  const want = sha256(model.read(name));
  const a = model.view(name);
  const b = model.view(name);
  a[0] ^= 0xff;
  t.equal(b[0], a[0], 'two views share the bytes');
  t.equal(model.read(name)[0], a[0], 'read() sees a write through a view');
  a[0] ^= 0xff;
  model.close();
  t.equal(sha256(b), want, 'a view keeps the memory after close()');
  t.throws(() => model.view(name), { code: 'E_USAGE' }, 'no new views of a closed model');
  t.throws(() => model.read(name), { code: 'E_USAGE' });
});

t.test('--mmap maps the file copy-on-write: tensors at their file offsets, nothing copied', { skip: why }, async (t) => {
  const dir = t.testdir();
  const f = join(dir, 'm.tensors');
  copyFileSync(join(VECTORS, 'many_tensors.tensors'), f);
  const before = readFileSync(f);
  const { TensorizerFile } = await import('../src/format/reader.js');
  const { FileSource } = await import('../src/sources/file.js');
  const src = await FileSource.open(f);
  const entries = (await TensorizerFile.open(src)).entries;
  await src.close();
  const model = await load(f, { mmap: true, filter: 'blk.1*', verify: true, readers: 3 });
  const s = model.stats;
  t.match(s, { device: 'cpu', mmap: true, verified: true, hostBytes: 0, mappedBytes: before.length, hugePages: false });
  t.ok(model.tensors.length > 1 && s.skipped > 0, 'the filter applies');
  for (const x of model.tensors) {
    const e = entries.find((y) => y.name === x.name)!;
    t.equal(x.offset, e.dataOffset, `${x.name} sits at its file offset`);
    t.same(model.view(x.name), before.subarray(e.dataOffset, e.dataOffset + e.dataLength), `${x.name}: bytes`);
  }
  const v = model.view(model.tensors.find((x) => x.bytes > 0)!.name);
  v.fill(0x5a);
  t.same(readFileSync(f), before, 'writing to a mapped tensor never reaches the file');
  model.close();
  t.ok(v.every((x) => x === 0x5a), 'the written view keeps its own copy of its pages');
  await t.rejects(load(f, { mmap: true, device: 'cuda:0' }), { code: 'E_USAGE' }, '--mmap is host memory only');
  await t.rejects(load('http://127.0.0.1:9/x.tensors', { mmap: true }), { code: 'E_USAGE', message: /local file/ });
});

t.test('serialize aligns by default (and with --align) so --mmap tensors are aligned; --no-align files are reported', { skip: why }, async (t) => {
  const dir = t.testdir();
  const tensors: StTensor[] = [];
  for (let i = 0; i < 12; i++) tensors.push({ name: `layers.${i}.w${'x'.repeat(i)}`, dtype: i % 2 ? 'F32' : 'BF16', shape: [3 + i, 5], data: bytes((3 + i) * 5 * (i % 2 ? 4 : 2), i) });
  tensors.push({ name: 'empty.bias', dtype: 'F32', shape: [0], data: Buffer.alloc(0) }); // no data: never counted as misaligned
  writeSafetensors(join(dir, 'in.safetensors'), tensors);
  const mm = (f: string) => {
    const r = spawnSync(process.execPath, [BIN, 'load', f, '--mmap', '--verify', '--json'], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    return { doc: JSON.parse(r.stdout), stderr: r.stderr };
  };
  for (const [label, args] of [['--no-align', ['--no-align']], ['default', []], ['--align 64', ['--align', '64']]] as const) {
    const out = join(dir, `${label.replace(/\W+/g, '')}.tensors`);
    const s = spawnSync(process.execPath, [BIN, 'serialize', join(dir, 'in.safetensors'), '-o', out, '-q', ...args], { encoding: 'utf8' });
    t.equal(s.status, 0, s.stderr);
    const { doc, stderr } = mm(out);
    const model = await load(out, { mmap: true });
    const misaligned = model.tensors.filter((x) => x.bytes > 0 && x.offset % (x.dtype === 'float32' ? 4 : 2) !== 0).length;
    for (const x of tensors) t.equal(sha256(model.view(x.name)), sha256(x.data), `${x.name} (${label})`);
    model.close();
    t.equal(doc.misaligned, misaligned, 'the report counts the tensors not aligned to their element size');
    if (label !== '--no-align') t.equal(misaligned, 0, `${label}: none`);
    else {
      t.ok(misaligned > 0, 'unpadded names of varying length leave some tensors unaligned');
      t.match(stderr, /not multiples of their element size.*tensorize serialize writes aligned files/s, 'and the CLI says how to fix it');
    }
  }
  const bad = spawnSync(process.execPath, [BIN, 'serialize', join(dir, 'in.safetensors'), '-o', join(dir, 'x.tensors'), '--align', '48'], { encoding: 'utf8' });
  t.equal(bad.status, 2, '--align 48 is a usage error');
  t.notOk(existsSync(join(dir, 'x.tensors')));
});

t.test('--filter loads only matching tensors', { skip: why }, async (t) => {
  t.ok(compileFilter('layers.*.weight')!('layers.3.weight'));
  t.notOk(compileFilter('layers.*.weight')!('layersX3.weight.bias'));
  t.ok(compileFilter('/^a|b$/')!('b'));
  t.throws(() => compileFilter('/(/'), { code: 'E_USAGE' });
  const all = manifestOf('many_tensors.tensors').tensors.map((x) => nameOf(x.name));
  const pick = all.filter((n) => /^blk\.[0-9]*1\.p$/.test(n));
  const model = await load(join(VECTORS, 'many_tensors.tensors'), { device: 'cpu', filter: 'blk.*1.p' });
  t.same(model.tensors.map((x) => x.name), pick);
  t.equal(model.stats.skipped, all.length - pick.length);
  model.close();
  await t.rejects(load(join(VECTORS, 'many_tensors.tensors'), { device: 'cpu', filter: 'nothing-matches' }), { code: 'E_USAGE' });
});

t.test('--verify names the corrupted tensor; a truncated file fails cleanly', { skip: why }, async (t) => {
  const dir = t.testdir();
  const f = join(dir, 'bad.tensors');
  copyFileSync(join(VECTORS, 'module_bf16_v2.tensors'), f);
  const model = await load(f, { device: 'cpu' });
  const victim = model.tensors.find((x) => x.bytes > 0)!;
  model.close();
  const { TensorizerFile } = await import('../src/format/reader.js');
  const { FileSource } = await import('../src/sources/file.js');
  const src = await FileSource.open(f);
  const e = (await TensorizerFile.open(src)).entries.find((x) => x.name === victim.name)!;
  await src.close();
  const b = readFileSync(f);
  b[e.dataOffset] ^= 0x40;
  writeFileSync(f, b);
  await t.rejects(load(f, { device: 'cpu', verify: true, plaid: true, readers: 2 }), { code: 'E_HASH_MISMATCH', message: new RegExp(`^${f.replace(/[.[\]/]/g, '\\$&')}: tensor "${victim.name.replace(/[.[\]]/g, '\\$&')}" does not match its stored CRC32 and SHA-256$`) });
  await t.rejects(load(f, { device: 'cpu', verify: true, plaid: false }), { code: 'E_HASH_MISMATCH' });
  await t.rejects(load(f, { mmap: true, verify: true, readers: 3 }), { code: 'E_HASH_MISMATCH', message: new RegExp(`tensor "${victim.name.replace(/[.[\]]/g, '\\$&')}" does not match its stored CRC32 and SHA-256$`) });
  const ok = await load(f, { device: 'cpu' });
  t.pass('without --verify the corruption is not looked for');
  ok.close();
  writeFileSync(f, b.subarray(0, e.dataOffset + 1));
  await t.rejects(load(f, { device: 'cpu' }), { code: /E_FORMAT|E_FILE_CHANGED/ });
  await t.rejects(load(f, { mmap: true }), { code: /E_FORMAT|E_FILE_CHANGED/ });
});

t.test('the native pipeline test program passes, with every hash implementation', { skip: existsSync(join(ROOT, 'native/build/tensorize_native_test')) ? false : 'not built' }, async (t) => {
  // TENSORIZE_HASH narrows what the CPU offers: the default (SHA-NI + VPCLMUL where present),
  // PCLMUL CRC32 only, and the portable code every machine has.
  for (const mode of ['', 'pclmul', 'portable']) {
    const r = spawnSync(join(ROOT, 'native/build/tensorize_native_test'), { encoding: 'utf8', env: { ...process.env, TENSORIZE_HASH: mode } });
    t.equal(r.status, 0, `${mode || 'default'}: ${r.stderr}`);
    t.match(r.stdout, /^[0-9]+ passed, 0 failed$/m);
    const impl = /^hashes: (.*)$/m.exec(r.stdout)?.[1];
    t.comment(`hashes (${mode || 'default'}): ${impl}`);
    if (mode === 'portable') t.equal(impl, 'portable');
  }
  // The GPU rounds on two simulated devices (the loader's and the fetcher's device paths).
  const sim = spawnSync(join(ROOT, 'native/build/tensorize_native_test'), { encoding: 'utf8', env: { ...process.env, TENSORIZE_SIM_GPU: '2' } });
  t.equal(sim.status, 0, `simulated GPUs: ${sim.stdout.slice(-2000)}\n${sim.stderr}`);
  t.match(sim.stdout, /^device backend: simulated, devices: 2$/m);
  t.match(sim.stdout, /^[0-9]+ passed, 0 failed$/m);
});

t.test('tensorize load through the CLI', { skip: why }, async (t) => {
  const r = spawnSync(process.execPath, [BIN, 'load', join(VECTORS, 'dtypes_v1.tensors'), '--device', 'cpu', '--plaid', '--verify', '--json'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  t.match(doc, { ok: true, device: 'cpu', plaid: true, verified: true, tensors: manifestOf('dtypes_v1.tensors').tensors.length });
  for (const k of ['openMs', 'firstTensorMs', 'transferMs', 'totalMs', 'bytes', 'gbPerSecond', 'peakRssBytes', 'pinnedBytes', 'deviceBytes']) t.type(doc[k], 'number', k);
  const mm = spawnSync(process.execPath, [BIN, 'load', join(VECTORS, 'dtypes_v1.tensors'), '--mmap', '--verify', '--json'], { encoding: 'utf8' });
  t.equal(mm.status, 0, mm.stderr);
  t.match(JSON.parse(mm.stdout), { ok: true, device: 'cpu', mmap: true, verified: true, hostBytes: 0, mappedBytes: readFileSync(join(VECTORS, 'dtypes_v1.tensors')).length });
  const mmGpu = spawnSync(process.execPath, [BIN, 'load', join(VECTORS, 'dtypes_v1.tensors'), '--mmap', '--device', 'cuda:0'], { encoding: 'utf8' });
  t.equal(mmGpu.status, 2, '--mmap with a GPU is a usage error');
  const bad = spawnSync(process.execPath, [BIN, 'load', join(VECTORS, 'dtypes_v1.tensors'), '--device', 'tpu:0'], { encoding: 'utf8' });
  t.equal(bad.status, 2, 'a bad --device is a usage error');
  const enc = spawnSync(process.execPath, [BIN, 'load', join(VECTORS, 'encrypted_key_v3.tensors'), '--device', 'cpu'], { encoding: 'utf8' });
  t.equal(enc.status, 1);
  t.match(enc.stderr, /encrypted: not supported yet/);
  if (!info || info.deviceCount === 0) {
    const g = spawnSync(process.execPath, [BIN, 'load', join(VECTORS, 'dtypes_v1.tensors'), '--device', 'cuda:0'], { encoding: 'utf8' });
    t.equal(g.status, 1, 'asking for a GPU where there is none');
    t.match(g.stderr, /no CUDA device is usable: /);
  }
});

t.test('tensorize doctor and nativeInfo(): what the addon was built with and what it finds', async (t) => {
  const lib = await import('../src/index.js');
  t.type(lib.load, 'function', 'load() is exported by the package entry');
  t.type(lib.LoadedModel, 'function');
  const r = spawnSync(process.execPath, [BIN, 'doctor', '--json'], { encoding: 'utf8' });
  const doc = JSON.parse(r.stdout);
  t.same(doc.host.cpus, lib.nativeInfo().host.cpus);
  if (info) {
    t.equal(r.status, 0, r.stderr);
    t.match(doc, { ok: true, available: true, backend: info.backend, hashImplementation: info.hashImplementation, populate: info.populate });
    t.type(doc.populate, 'boolean');
    t.equal(doc.devices.length, info.deviceCount);
    t.equal(doc.noDeviceReason === undefined, info.deviceCount > 0, 'a reason exactly when no GPU is usable');
    if (info.driverVersion > 0) t.match(doc.cudaDriver, /^[0-9]+\.[0-9]+$/);
  } else t.equal(r.status, 1);
  const human = spawnSync(process.execPath, [BIN, 'doctor'], { encoding: 'utf8' });
  t.match(human.stdout, /native addon +(loaded|NOT AVAILABLE)[\s\S]*hashes[\s\S]*huge pages/);
  const broken = spawnSync(process.execPath, [BIN, 'doctor', '--json'], { encoding: 'utf8', env: { ...process.env, TENSORIZE_NATIVE: '/nonexistent/tensorize_native.node' } });
  t.equal(broken.status, 1, 'no addon: exit 1');
  const b = JSON.parse(broken.stdout);
  t.match(b, { ok: false, available: false, error: { code: 'E_NATIVE_UNAVAILABLE', message: /not built/ } });
  t.ok(b.hints.some((h: string) => /npm run build:native/.test(h)), 'the fixes are listed');
});

t.test('GPU loads match the manifests', { skip: why || gpu }, async (t) => {
  for (const f of vectors) {
    await checkVector(t, f, 'cuda:0', true, 4, 4096, true);
    await checkVector(t, f, 'cuda:0', false, 1, 1 << 20, false);
  }
  const model = await load(join(VECTORS, 'many_tensors.tensors'), { device: 'cuda:0', plaid: true, readers: 2, chunkSize: 1 << 20 });
  t.ok(model.stats.deviceBytes > 0 && model.stats.pinnedBytes === 2 * 2 * (1 << 20), 'device memory and a 2-slot ring per reader');
  t.throws(() => model.view(model.tensors[0]!.name), { code: 'E_USAGE' }, 'view() is for host memory');
  model.close();
});
