// The native loader (tensorize load): host-memory loads of the reference vectors checked
// byte for byte against their manifests, in every mode (--mmap included); zero-copy views
// of host loads; --filter, --verify catching corruption, files that change during a load;
// the native pipeline test program; and GPU
// loads when this machine has a usable device (skipped with the reason otherwise).
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileFilter, load } from '../src/ops/load.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { FileSource } from '../src/sources/file.js';
import { TensorizerFile } from '../src/format/reader.js';
import { BIN, bytes, ROOT, sha256, VECTORS, writeSafetensors, type StTensor } from './helpers/util.js';
import { manifestProblems, readManifest, tensorName, type Manifest } from './helpers/manifest.mjs';

const available = nativeAvailable();
const why = available ? false : 'the native addon is not built (npm run build:native)';
const info = available ? native().info() : undefined;
const gpu = info && info.deviceCount > 0 ? false : `no usable CUDA device (${info?.noDeviceReason || 'native addon not built'})`;
// On a GPU machine, a missing device must fail the run rather than skip the GPU tests.
if (gpu && process.env.TENSORIZE_REQUIRE_GPU === '1') t.fail(`TENSORIZE_REQUIRE_GPU=1, but ${gpu}`);

const vectors = readdirSync(VECTORS).filter((f) => f.endsWith('.tensors') && !f.startsWith('encrypted')).sort();

async function checkVector(t: Test, f: string, device: string, plaid: boolean, readers: number, chunkSize: number, verify: boolean, mmap = false): Promise<void> {
  const model = await load(join(VECTORS, f), { device, plaid, readers, chunkSize, verify, mmap });
  try {
    const how = `${f} ${device} plaid=${plaid} mmap=${mmap} readers=${readers} chunk=${chunkSize} verify=${verify}`;
    // every tensor's name, type, dtype, shape and bytes (read(), and view() in host memory), aligned unless mapped
    t.same(manifestProblems(model, readManifest(VECTORS, f), { align: mmap ? undefined : 256, view: device === 'cpu' }), [], `${how}: the manifest`);
  } finally {
    model.close();
  }
}

t.test('the manifest check reports what differs: a changed byte, a wrong hash, dtype, shape or size, a missing or extra tensor', { skip: why }, async (t) => {
  const f = 'module_bf16_v2.tensors';
  const m = readManifest(VECTORS, f);
  const model = await load(join(VECTORS, f), { device: 'cpu' });
  try {
    t.same(manifestProblems(model, m, { view: true }), [], 'the intact load agrees with its manifest');
    const i = m.tensors.findIndex((x) => !x.meta && (x.nbytes ?? 0) > 1);
    const name = tensorName(m.tensors[i]!.name);
    const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    // One byte of the loaded memory, changed through a view (read() sees it too).
    const v = model.view(name);
    const at = v.length >> 1;
    v[at]! ^= 0x01;
    const p = manifestProblems(model, m, { view: true });
    t.equal(p.length, 2, `one changed byte: two problems (read() and view()): ${p.join('; ')}`);
    t.match(p[0], new RegExp(`^${esc}: read\\(\\) bytes have SHA-256 [0-9a-f]{64}, the manifest says ${m.tensors[i]!.sha256}$`));
    t.match(p[1], new RegExp(`^${esc}: view\\(\\) bytes have SHA-256 `));
    t.same(manifestProblems(model, m), [p[0]], 'without view: the read() problem alone');
    v[at]! ^= 0x01;
    t.same(manifestProblems(model, m, { view: true }), [], 'the byte put back: no problem');
    // Manifests that say something else: exactly these problems, in this order.
    const edit = (change: (x: Manifest) => void): string[] => {
      const w: Manifest = structuredClone(m);
      change(w);
      return manifestProblems(model, w);
    };
    const expect = (got: string[], want: (string | RegExp)[], what: string) =>
      t.ok(got.length === want.length && want.every((x, k) => (typeof x === 'string' ? got[k] === x : x.test(got[k]!))), `${what}: ${got.join('; ') || 'no problem'}`);
    const hash = m.tensors[i]!.sha256!;
    const wrong = (hash[0] === '0' ? '1' : '0') + hash.slice(1);
    expect(edit((w) => (w.tensors[i]!.sha256 = wrong)), [`${name}: read() bytes have SHA-256 ${hash}, the manifest says ${wrong}`], 'a wrong hash');
    expect(edit((w) => (w.tensors[i]!.dtype = 'float64')), [new RegExp(`^${esc}: dtype \\w+, the manifest says float64$`)], 'a wrong dtype');
    expect(edit((w) => w.tensors[i]!.shape.push(1, 1)), [new RegExp(`^${esc}: shape \\[[0-9,]*\\], the manifest says \\[[0-9,]*,1,1\\]$`)], 'a wrong shape');
    expect(edit((w) => (w.tensors[i]!.type = 'buffer')), [new RegExp(`^${esc}: type \\w+, the manifest says buffer$`)], 'a wrong type');
    expect(edit((w) => (w.tensors[i]!.nbytes! += 2)), [new RegExp(`^${esc}: [0-9]+ bytes, the manifest says [0-9]+$`), /^stats\.bytes is [0-9]+, the manifest's tensors hold [0-9]+$/], 'a wrong size');
    const n = m.tensors.length;
    expect(edit((w) => w.tensors.splice(i, 1)), [`${n} tensors loaded, the manifest lists ${n - 1}`, `${name}: loaded, but not in the manifest`, /^stats\.bytes/], 'a tensor the manifest does not list');
    expect(edit((w) => w.tensors.push({ ...w.tensors[i]!, name: 'no.such.tensor' })), [`${n} tensors loaded, the manifest lists ${n + 1}`, 'no.such.tensor: missing'], 'a tensor that was not loaded');
    expect(edit((w) => (w.tensors[i]!.meta = true)), [`${name}: a meta tensor in the manifest, loaded to cpu`, /^stats\.bytes/], 'a tensor the manifest says is meta');
  } finally {
    model.close();
  }
});

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
  const all = readManifest(VECTORS, 'many_tensors.tensors').tensors.map((x) => tensorName(x.name));
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
  t.match(doc, { ok: true, device: 'cpu', plaid: true, verified: true, tensors: readManifest(VECTORS, 'dtypes_v1.tensors').tensors.length });
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
  t.match(enc.stderr, /tensor "a" \(#0\) is encrypted; give its key \(--key-file PATH or TENSORIZE_KEY\)/);
  // A malformed crypt-info block (5 MACs for a 34-byte tensor): load says what verify says.
  const broken = join(t.testdir(), 'broken-crypt.tensors');
  const bytes = readFileSync(join(VECTORS, 'encrypted_key_v3.tensors'));
  const src = await FileSource.open(join(VECTORS, 'encrypted_key_v3.tensors'));
  const tf = await TensorizerFile.open(src);
  const b = tf.entries.find((x) => x.name === 'b')!;
  const { header } = await tf.readHeader(b);
  await src.close();
  t.equal(header.crypt!.chunks[0]!.type, 2, 'the key vector\'s first crypt chunk is the cipher');
  bytes[b.headerOffset + header.crypt!.start + 8 + 2 + 8 + 2 + 8 + 24] = 5; // num_macs
  writeFileSync(broken, bytes);
  const lb = spawnSync(process.execPath, [BIN, 'load', broken, '--device', 'cpu'], { encoding: 'utf8' });
  const vb = spawnSync(process.execPath, [BIN, 'verify', broken], { encoding: 'utf8' });
  t.equal(lb.status, 1, 'load: a malformed crypt-info block fails');
  t.match(lb.stderr, /tensor "b" \(#1\): crypt chunk of type 2: 5 MACs for 34 bytes in chunks of 2097152 \(expected 1\)/);
  t.equal(lb.stderr.split('\n')[0], vb.stderr.split('\n')[0], 'load gives the error verify gives');
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
