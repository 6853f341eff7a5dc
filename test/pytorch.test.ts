// PyTorch checkpoints as input: reference files from torch 1.13.1 (../shared/vectors), the
// fixtures real torch wrote (fixtures/pytorch, made by make_fixtures.py) and hand-assembled
// torch 2.x records; each is serialized and read back tensor by tensor against the SHA-256
// of the contiguous bytes torch itself computed. Hostile checkpoints are refused.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TensorizeError } from '../src/errors.js';
import { TensorizerFile } from '../src/format/reader.js';
import { POOL_MOCK } from './helpers/pool.js';
import { openInput } from '../src/inputs/index.js';
import { FileSource } from '../src/sources/file.js';
import { checkpointZip, pickleDict, storedZip, tensorV2 } from './helpers/pickle.js';
import { BIN, bytes, ROOT, sha256, VECTORS } from './helpers/util.js';

const FIX = join(ROOT, 'fixtures', 'pytorch');
const { verifyFile } = await t.mockImport<typeof import('../src/ops/verify.js')>('../src/ops/verify.js', POOL_MOCK);
const { writeTensorizer } = await t.mockImport<typeof import('../src/ops/serialize.js')>('../src/ops/serialize.js', POOL_MOCK);
let outs = 0;

interface Want {
  name: string;
  dtype: string;
  shape: number[];
  sha256: string;
}

/** Serialize an input and return what the .tensors file holds: name -> {dtype, shape, sha256}. */
async function roundTrip(dir: string, input: string, key?: string): Promise<{ got: Map<string, Want>; warnings: string[]; out: string }> {
  const model = await openInput(input, { key });
  const out = join(dir, `out${outs++}.tensors`);
  await writeTensorizer(out, model.tensors.map((x) => ({ path: x.path, type: 2, dtype: x.dtype, shape: x.shape, data: x.data })), { threads: 1 });
  const src = await FileSource.open(out);
  try {
    const tf = await TensorizerFile.open(src);
    const got = new Map<string, Want>();
    for (const e of tf.entries) {
      const { header } = await tf.readHeader(e);
      got.set(e.name, { name: e.name, dtype: e.dtype.name, shape: e.shape, sha256: sha256(await src.read(e.dataOffset, header.dataLength)) });
    }
    const v = await verifyFile(src);
    if (!v.ok) throw new Error(`verify failed: ${JSON.stringify(v.failures)}`);
    return { got, warnings: model.warnings, out };
  } finally {
    await src.close();
  }
}

function same(t: Test, got: Map<string, Want>, want: Want[]): void {
  t.same([...got.keys()], want.map((w) => w.name), 'the same tensors, in order');
  for (const w of want) {
    const g = got.get(w.name);
    t.same(g && { dtype: g.dtype, shape: g.shape, sha256: g.sha256 }, { dtype: w.dtype, shape: w.shape, sha256: w.sha256 }, `tensor ${w.name}`);
  }
}

const reference = JSON.parse(readFileSync(join(VECTORS, 'checkpoint.json'), 'utf8')) as { files: string[]; tensors: Want[] };
for (const f of reference.files) {
  t.test(`reference ${f} (torch 1.13.1): every tensor matches checkpoint.json`, async (t) => {
    const { got } = await roundTrip(t.testdir(), join(VECTORS, f));
    same(t, got, reference.tensors);
  });
}

const manifest = JSON.parse(readFileSync(join(FIX, 'manifest.json'), 'utf8')) as { files: Record<string, Want[]> };
for (const [f, want] of Object.entries(manifest.files)) {
  t.test(`fixture ${f}: every tensor matches what torch computed`, async (t) => {
    const { got } = await roundTrip(t.testdir(), join(FIX, f));
    same(t, got, want);
  });
}

t.test('zip and legacy copies of one state dict give byte-identical .tensors files', async (t) => {
  const dir = t.testdir();
  const a = await roundTrip(dir, join(FIX, 'zip.pt'));
  const b = await roundTrip(dir, join(FIX, 'legacy.pt'));
  t.ok(readFileSync(a.out).equals(readFileSync(b.out)));
});

t.test('a model directory of .bin shards, skipping training_args.bin', async (t) => {
  const { got } = await roundTrip(t.testdir(), join(FIX, 'sharded'));
  same(t, got, manifest.files['sharded/pytorch_model.bin.index.json']!);
});

t.test('nested checkpoints: dotted names, --key picks a sub-tree, non-tensors are skipped with a warning', async (t) => {
  const dir = t.testdir();
  const all = await roundTrip(dir, join(FIX, 'nested.pt'));
  t.same([...all.got.keys()], ['state_dict.layer.weight', 'state_dict.layer.bias', 'optimizer.state.0.exp_avg']);
  t.match(all.warnings.join('\n'), /skipped 4 non-tensor value\(s\): optimizer\.state\.0\.step, optimizer\.param_groups, epoch, name$/m);
  t.match(all.warnings.join('\n'), /--key state_dict/);
  const sd = await roundTrip(dir, join(FIX, 'nested.pt'), 'state_dict');
  t.same([...sd.got.keys()], ['layer.weight', 'layer.bias']);
  t.equal(sd.got.get('layer.weight')!.sha256, all.got.get('state_dict.layer.weight')!.sha256);
  const deep = await roundTrip(dir, join(FIX, 'nested.pt'), 'optimizer.state.0');
  t.same([...deep.got.keys()], ['exp_avg']);
  await t.rejects(openInput(join(FIX, 'nested.pt'), { key: 'nope' }), { code: 'E_USAGE', message: /no entry "nope" \(found: "state_dict", "optimizer", "epoch", "name"\)/ });
  await t.rejects(openInput(join(FIX, 'nested.pt'), { key: 'epoch' }), { code: 'E_INPUT', message: /no tensors found under --key "epoch"/ });
});

t.test('refused and unsupported files, through the CLI: exit 1, a clear message, no output', async (t) => {
  const dir = t.testdir();
  const cases: [string, string, RegExp][] = [
    ['evil_system.pt', 'E_PICKLE_GLOBAL', /refused global posix\.system/],
    ['evil_system_legacy.pt', 'E_PICKLE_GLOBAL', /refused global posix\.system/],
    ['evil_eval.pt', 'E_PICKLE_GLOBAL', /refused global __builtin__\.eval/],
    ['torchscript.pt', 'E_UNSUPPORTED', /TorchScript archive/],
    ['tar_format.pt', 'E_UNSUPPORTED', /pre-1\.0 PyTorch tar checkpoint/],
  ];
  for (const [f, code, msg] of cases) {
    const out = join(dir, `${f}.tensors`);
    const r = spawnSync(process.execPath, [BIN, 'serialize', join(FIX, f), '-o', out, '--json'], { encoding: 'utf8' });
    t.equal(r.status, 1, `${f}: exit 1`);
    const doc = JSON.parse(r.stdout) as { ok: boolean; error: { code: string; message: string } };
    t.equal(doc.error.code, code, `${f}: code`);
    t.match(doc.error.message, msg, `${f}: message`);
    t.notOk(existsSync(out), `${f}: no output file`);
  }
  t.same(readdirSync(dir), [], 'no temporary files left behind');
  t.notOk(existsSync('/tmp/tensorize-pwned'), 'nothing was executed');
});

t.test('hand-assembled archives: bounds, records and containers are checked', async (t) => {
  const dir = t.testdir();
  const f32 = bytes(48, 1); // 12 float32
  const cases: [string, Buffer, RegExp, string][] = [
    ['view past the storage', checkpointZip(pickleDict([['w', tensorV2('FloatStorage', '0', 12, 8, [2, 3], [3, 1])]]), { 0: f32 }), /reaches element 13 of a storage that holds 12/, 'E_PICKLE'],
    ['stride past the storage', checkpointZip(pickleDict([['w', tensorV2('FloatStorage', '0', 12, 0, [3, 3], [1, 5])]]), { 0: f32 }), /reaches element 12/, 'E_PICKLE'],
    ['record shorter than the storage', checkpointZip(pickleDict([['w', tensorV2('FloatStorage', '0', 12, 0, [12], [1])]]), { 0: f32.subarray(0, 40) }), /should hold 48 bytes but its record has 40/, 'E_PICKLE'],
    ['missing record', checkpointZip(pickleDict([['w', tensorV2('FloatStorage', '7', 12, 0, [12], [1])]]), { 0: f32 }), /storage 7 has no archive\/data\/7 record/, 'E_PICKLE'],
    ['storage key with a path', checkpointZip(pickleDict([['w', tensorV2('FloatStorage', '../0', 12, 0, [12], [1])]]), { 0: f32 }), /storage key is not a short string/, 'E_PICKLE'],
    ['not a storage class', checkpointZip(pickleDict([['w', tensorV2('Size', '0', 12, 0, [12], [1])]]), { 0: f32 }), /not a torch storage class/, 'E_PICKLE'],
    ['size and stride disagree', checkpointZip(pickleDict([['w', tensorV2('FloatStorage', '0', 12, 0, [12], [1, 1])]]), { 0: f32 }), /size has 1 dimensions but stride has 2/, 'E_PICKLE'],
    ['no data.pkl', storedZip([['x/version', Buffer.from('3\n')]]), /has no x\/data\.pkl record/, 'E_INPUT'],
    ['no folder', storedZip([['data.pkl', pickleDict([])]]), /no top-level record folder/, 'E_INPUT'],
    ['no tensors', checkpointZip(pickleDict([['epoch', Buffer.from('K\x03')]]), {}), /no tensors found/, 'E_INPUT'],
    ['bad byteorder', checkpointZip(pickleDict([['w', tensorV2('FloatStorage', '0', 12, 0, [12], [1])]]), { 0: f32 }, [['byteorder', Buffer.from('middle')]]), /byteorder record says "middle"/, 'E_INPUT'],
    ['torchscript', checkpointZip(pickleDict([]), {}, [['constants.pkl', Buffer.from('\x80\x02).')]]), /TorchScript archive/, 'E_UNSUPPORTED'],
  ];
  for (const [what, data, msg, code] of cases) {
    const p = join(dir, `${what.replace(/\W+/g, '_')}.pt`);
    writeFileSync(p, data);
    await t.rejects(openInput(p), { code, message: msg }, what);
  }
  // compressed entries
  const p = join(dir, 'deflated.pt');
  writeFileSync(p, storedZip([['archive/data.pkl', pickleDict([['w', tensorV2('FloatStorage', '0', 12, 0, [12], [1])]])], ['archive/data/0', f32]], { method: 8 }));
  await t.rejects(openInput(p), { code: 'E_UNSUPPORTED', message: /compressed \(method 8\)/ });
});

t.test('a container that holds itself, and deeply nested containers, are refused', async (t) => {
  const dir = t.testdir();
  // d = {}; d['self'] = d
  const cyc = Buffer.concat([Buffer.from([0x80, 2]), Buffer.from('}q\x00'), Buffer.from('X\x04\x00\x00\x00self'), Buffer.from('h\x00s.')]);
  writeFileSync(join(dir, 'cyc.pt'), checkpointZip(cyc, {}));
  await t.rejects(openInput(join(dir, 'cyc.pt')), { code: 'E_PICKLE', message: /holds itself/ });
  // 300 nested lists
  const deep = Buffer.concat([Buffer.from([0x80, 2]), Buffer.from(']'.repeat(300)), Buffer.from('a'.repeat(299)), Buffer.from('.')]);
  writeFileSync(join(dir, 'deep.pt'), checkpointZip(deep, {}));
  await t.rejects(openInput(join(dir, 'deep.pt')), { code: 'E_PICKLE', message: /nested more than 200 deep/ });
});

t.test('truncated checkpoints fail cleanly at every length', async (t) => {
  const dir = t.testdir();
  for (const f of ['zip.pt', 'legacy.pt']) {
    const full = readFileSync(join(FIX, f));
    const p = join(dir, f);
    const seen = new Set<string>();
    let n = 0;
    for (let len = 0; len < full.length; len += len < 2048 ? 7 : 331) {
      writeFileSync(p, full.subarray(0, len));
      try {
        await openInput(p);
        // A legacy file cut inside its storages still opens only if nothing is missing; that cannot happen here.
        t.fail(`${f} cut to ${len} bytes opened`);
      } catch (e) {
        if (!(e instanceof TensorizeError)) t.fail(`${f} cut to ${len}: ${String(e)}`);
        else seen.add(e.code);
      }
      n++;
    }
    t.ok(n > 50, `${f}: ${n} truncations`);
    t.ok([...seen].every((c) => ['E_INPUT', 'E_PICKLE', 'E_UNSUPPORTED'].includes(c)), `${f}: codes ${[...seen].join(', ')}`);
  }
});

// Fresh checkpoints from real torch, when this machine has it (CI does not install torch:
// the committed fixtures above cover the same ground there).
const PY = process.env.TORCH_PYTHON ?? '/usr/bin/python3';
const torchOk = spawnSync(PY, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
t.test('random checkpoints written by real torch just now', { skip: torchOk ? false : `no python with torch at ${PY} (set TORCH_PYTHON)` }, async (t) => {
  const dir = t.testdir();
  const r = spawnSync(PY, [join(ROOT, 'scripts', 'peers', 'torch_random_checkpoints.py'), dir, '--count', '6', '--seed', '42'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Record<string, Want[]>;
  for (const [f, want] of Object.entries(m)) {
    const { got } = await roundTrip(dir, join(dir, f));
    same(t, got, want);
  }
});
