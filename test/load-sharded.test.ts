// load of a sharded safetensors checkpoint, as it is (issue #16): an index with its shards,
// a directory with or without an index, locally (--plaid, simple, --mmap, the simulated
// GPU) and over HTTP (an index URL, a directory URL; the native fetcher and the JavaScript
// client): every tensor's bytes against what was written, from several shards in one plan.
// Bad input: a shard missing (from disk, 404), outside its directory, a name in two shards,
// an index that disagrees with its shards, a bad header in one shard, an object that
// changes during the load: a clear error, exit 1, nothing left allocated.
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, nativeAvailable } from '../src/native/binding.js';
import { load, type LoadOptions, type LoadStats } from '../src/ops/load.js';
import { TensorizeError } from '../src/errors.js';
import { startHttpServer } from './helpers/servers.js';
import { bytes, runCli, setEnv, sha256, writeSafetensors, type StTensor } from './helpers/util.js';

// The GPU rounds run on the simulated device (chosen once per process, at the first load).
process.env.TENSORIZE_SIM_GPU = '1';

const why = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';
const root = mkdtempSync(join(tmpdir(), 'tz-load-shards-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

// Three shards of odd sizes (unaligned offsets), one tensor larger than the 4 KiB chunks used below.
const shards: StTensor[][] = [
  [
    { name: 'model.embed.weight', dtype: 'F32', shape: [3, 5], data: bytes(60, 1) },
    { name: 'model.layers.0.norm', dtype: 'BF16', shape: [7], data: bytes(14, 2) },
  ],
  [
    { name: 'model.layers.0.proj', dtype: 'F16', shape: [101, 97], data: bytes(2 * 101 * 97, 3) },
    { name: 'model.layers.1.norm', dtype: 'F8_E4M3', shape: [9], data: bytes(9, 4) },
    { name: 'model.layers.1.mask', dtype: 'BOOL', shape: [5], data: bytes(5, 5) },
  ],
  [
    { name: 'model.layers.1.proj', dtype: 'F4', shape: [6], data: bytes(3, 6) },
    { name: 'lm_head.weight', dtype: 'I64', shape: [4, 33], data: bytes(8 * 132, 7) },
  ],
];
const all = shards.flat();
const shardName = (k: number) => `model-0000${k + 1}-of-00003.safetensors`;

/** A checkpoint directory: the shards, and the index unless `index` is false. */
function checkpoint(name: string, opts: { index?: boolean | Record<string, string>; parts?: StTensor[][] } = {}): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const parts = opts.parts ?? shards;
  parts.forEach((s, k) => writeSafetensors(join(dir, shardName(k)), s, { format: 'pt', shard: String(k) }));
  if (opts.index !== false) {
    const weightMap = typeof opts.index === 'object' ? opts.index : Object.fromEntries(parts.flatMap((s, k) => s.map((x) => [x.name, shardName(k)])));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1 }, weight_map: weightMap }));
  }
  return dir;
}

const good = checkpoint('good');
const noIndex = checkpoint('no-index', { index: false });

async function expectBytes(t: Test, input: string, opts: LoadOptions, what: string): Promise<LoadStats> {
  const m = await load(input, opts);
  try {
    t.equal(m.stats.files, 3, `${what}: three shards`);
    t.equal(m.stats.format, 'safetensors');
    t.same(m.tensors.map((x) => x.name).sort(), all.map((x) => x.name).sort(), `${what}: every tensor of every shard`);
    for (const want of all) {
      const got = m.tensors.find((x) => x.name === want.name)!;
      t.equal(sha256(m.read(want.name)), sha256(want.data), `${what}: ${want.name}: its bytes`);
      t.match(got.file, new RegExp(`${shardName(shards.findIndex((s) => s.includes(want)))}$`), `${what}: ${want.name}: its shard`);
      if (!opts.mmap) t.equal(got.offset % 256, 0, `${what}: ${want.name} at an aligned offset`);
    }
    t.equal(m.stats.bytes, all.reduce((n, x) => n + x.data.length, 0), `${what}: every byte counted`);
    return m.stats;
  } finally {
    m.close();
  }
}

t.test('local: an index, a directory with and without one, in every mode, on the host and the simulated GPU', { skip: why }, async (t) => {
  const modes: [string, LoadOptions][] = [
    ['--plaid', { device: 'cpu', plaid: true, readers: 3, chunkSize: 4096 }],
    ['simple', { device: 'cpu', plaid: false }],
    ['--mmap', { mmap: true, readers: 2, chunkSize: 4096 }],
    ['cuda:0 --plaid', { device: 'cuda:0', plaid: true, readers: 3, chunkSize: 4096 }],
    ['cuda:0 simple', { device: 'cuda:0', plaid: false }],
  ];
  for (const [input, label] of [
    [join(good, 'model.safetensors.index.json'), 'index'],
    [good, 'directory'],
    [noIndex, 'directory without an index'],
  ] as const) {
    for (const [how, opts] of modes) await expectBytes(t, input, opts, `${label}, ${how}`);
  }
  const c = native().simCounts();
  t.same([c.allocations, c.deviceBytes, c.registrations], [0, 0, 0], 'the simulated device holds nothing once every model is closed');
});

t.test('--filter across shards; the CLI report names the shards', { skip: why }, async (t) => {
  const m = await load(good, { device: 'cpu', filter: 'layers.*.norm' });
  t.same(m.tensors.map((x) => x.name), ['model.layers.0.norm', 'model.layers.1.norm'], 'one tensor from each of two shards');
  t.equal(m.stats.skipped, all.length - 2);
  m.close();
  const r = await runCli(['load', good, '--device', 'cpu']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /input +safetensors checkpoint, 3 shards/);
  t.match(r.stdout, /integrity +headers validated .*the data is not hashed/);
  const j = await runCli(['load', good, '--device', 'cpu', '--json']);
  t.match(JSON.parse(j.stdout), { ok: true, format: 'safetensors', files: 3, tensors: all.length });
});

t.test('over HTTP: an index URL and a directory URL, through the native fetcher and the JavaScript client', { skip: why }, async (t) => {
  const server = await startHttpServer(root);
  t.teardown(() => server.close());
  for (const net of [undefined, 'js']) {
    setEnv('TENSORIZE_NET', net);
    const engine = net ?? 'native';
    const before = server.requests.length;
    const a = await expectBytes(t, `${server.url}/good/model.safetensors.index.json`, { device: 'cpu', chunkSize: 4096, concurrency: 3 }, `index URL (${engine})`);
    t.equal(a.network?.engine, engine, `index URL: the ${engine} engine read the shards`);
    const ranged = server.requests.slice(before).filter((r) => r.range !== undefined).length;
    t.ok(ranged >= 3 + Math.ceil((2 * 101 * 97) / 4096), `index URL (${engine}): the shards' data came in 4 KiB range requests (${ranged})`);
    const b = await expectBytes(t, `${server.url}/good/`, { device: 'cuda:0' }, `directory URL (${engine}), simulated GPU`);
    t.equal(b.network?.engine, engine);
  }
  setEnv('TENSORIZE_NET', undefined);
});

/** A load that must fail: its error, and nothing left allocated on the simulated device. */
async function fails(t: Test, input: string, opts: LoadOptions, code: string, message: RegExp, what: string): Promise<void> {
  const e = await load(input, opts).then(
    (m) => (m.close(), undefined),
    (x: unknown) => x,
  );
  t.ok(e instanceof TensorizeError, `${what}: fails`);
  t.equal((e as TensorizeError).code, code, `${what}: ${code}`);
  t.match((e as Error).message, message, `${what}: says why`);
  const c = native().simCounts();
  t.same([c.allocations, c.deviceBytes, c.registrations], [0, 0, 0], `${what}: nothing left allocated`);
}

t.test('bad checkpoints: a clear error before anything is allocated', { skip: why }, async (t) => {
  const gpu = { device: 'cuda:0' };
  const missing = checkpoint('missing');
  rmSync(join(missing, shardName(1)));
  await fails(t, missing, gpu, 'E_NOT_FOUND', /missing\/model-00002-of-00003\.safetensors: no such file/, 'a shard missing from disk');

  const outside = checkpoint('outside', { index: { 'model.embed.weight': '../good/model-00001-of-00003.safetensors' } });
  await fails(t, outside, gpu, 'E_SAFETENSORS', /names the shard "\.\.\/good\/model-00001-of-00003\.safetensors", which is outside the index's directory/, 'a shard outside the directory');

  const twice = checkpoint('twice', { index: false, parts: [shards[0]!, [shards[0]![1]!, ...shards[1]!]] });
  await fails(t, twice, gpu, 'E_SAFETENSORS', /tensor "model\.layers\.0\.norm" is in both .*model-00001-of-00003\.safetensors and .*model-00002-of-00003\.safetensors/, 'a name in two shards');

  const misplaced = checkpoint('misplaced', { index: { ...Object.fromEntries(all.map((x) => [x.name, shardName(0)])) } });
  await fails(t, misplaced, gpu, 'E_SAFETENSORS', /tensor "model\.layers\.0\.proj" is listed in weight_map but is not in model-00001-of-00003\.safetensors/, 'an index that puts a tensor in the wrong shard');

  const dup = checkpoint('dup-key');
  writeFileSync(join(dup, 'model.safetensors.index.json'), `{"weight_map": {"model.embed.weight": "${shardName(0)}", "model.embed.weight": "${shardName(1)}"}}`);
  await fails(t, dup, gpu, 'E_SAFETENSORS', /not valid JSON: .*duplicate key "model\.embed\.weight"/, 'an index naming a tensor twice');

  const badHeader = checkpoint('bad-header');
  const h = JSON.stringify({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } });
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(join(badHeader, shardName(2)), Buffer.concat([len, Buffer.from(h), Buffer.alloc(4)]));
  const l = await runCli(['load', badHeader, '--device', 'cpu']);
  const s = await runCli(['serialize', join(badHeader, shardName(2)), '-o', join(root, 'out.tensors')]);
  t.equal(l.code, 1, 'a bad header in one shard: exit 1');
  t.equal(l.stderr.split('\n')[0], s.stderr.split('\n')[0], 'a bad header in one shard: the error serialize gives for that shard');
  t.match(l.stderr, /model-00003-of-00003\.safetensors: tensor "x": data_offsets \[0, 4\] hold 4 bytes, but a F32 tensor of shape \[2\] needs 8/);

  const empty = join(root, 'empty');
  mkdirSync(empty);
  const r = await runCli(['load', empty, '--device', 'cpu']);
  t.equal(r.code, 1);
  t.match(r.stderr, /empty: no safetensors weights here/, 'a directory without weights');
});

t.test('bad checkpoints over HTTP: a 404 shard, an object that changes during the load', { skip: why }, async (t) => {
  const server = await startHttpServer(root);
  t.teardown(() => server.close());
  const gone = checkpoint('gone');
  renameSync(join(gone, shardName(2)), join(gone, 'elsewhere.safetensors'));
  await fails(t, `${server.url}/gone/model.safetensors.index.json`, { device: 'cuda:0' }, 'E_NOT_FOUND', /gone\/model-00003-of-00003\.safetensors: not found \(HTTP 404\)/, 'a shard answering 404');
  const r = await runCli(['load', `${server.url}/gone/`, '--device', 'cpu']);
  t.equal(r.code, 1, 'a 404 shard: exit 1');
  for (const net of [undefined, 'js']) {
    setEnv('TENSORIZE_NET', net);
    server.faults.changed = false;
    await fails(
      t,
      `${server.url}/good/model.safetensors.index.json`,
      { device: 'cuda:0', onStart: () => (server.faults.changed = true) },
      'E_FILE_CHANGED',
      /good\/model-0000[123]-of-00003\.safetensors.*changed/,
      `a shard that changes between requests (${net ?? 'native'})`,
    );
  }
  server.faults.changed = false;
  setEnv('TENSORIZE_NET', undefined);
});

t.test('info: the .tensors table and JSON shape, plus metadata and shards, for a file, an index, a directory and a URL', async (t) => {
  const server = await startHttpServer(root);
  t.teardown(() => server.close());
  t.equal((await runCli(['serialize', join(good, shardName(0)), '-o', join(root, 'plain.tensors')])).code, 0, 'a .tensors file to compare with');
  const plain = await runCli(['info', '--json', join(root, 'plain.tensors')]);
  t.equal(plain.code, 0);
  for (const [input, files] of [
    [good, 3],
    [join(good, 'model.safetensors.index.json'), 3],
    [noIndex, 3],
    [join(good, shardName(1)), 1],
    [`${server.url}/good/`, 3],
    [`${server.url}/good/${shardName(2)}`, 1],
  ] as const) {
    const r = await runCli(['info', '--json', input]);
    t.equal(r.code, 0, `${input}: ${r.stderr}`);
    const doc = JSON.parse(r.stdout);
    const want = files === 1 ? shards[input.endsWith(shardName(1)) ? 1 : 2]! : all;
    t.match(doc, { ok: true, format: 'safetensors', tensorCount: want.length, dataBytes: want.reduce((n, x) => n + x.data.length, 0), encrypted: false, problems: [] }, `${input}: the summary`);
    t.equal(doc.shards.length, files, `${input}: its shards`);
    t.same(doc.metadata, files === 1 ? { format: 'pt', shard: input.endsWith(shardName(1)) ? '1' : '2' } : { format: 'pt', shard: '2' }, `${input}: __metadata__ (merged across shards)`);
    for (const x of want) {
      const e = doc.tensors.find((y: { name: string }) => y.name === x.name);
      t.match(e, { dtypeString: x.dtype, shape: x.shape, bytes: x.data.length, dataLength: x.data.length, meta: false }, `${input}: ${x.name}`);
    }
    t.same(Object.keys(JSON.parse(plain.stdout)).filter((k) => !(k in doc)), [], `${input}: every key of a .tensors file's JSON`);
  }
  const human = await runCli(['info', good]);
  t.match(human.stdout, /format: +safetensors, 3 shards/);
  t.match(human.stdout, /model\.layers\.0\.proj +F16 +\[101, 97\] +19594 +model-00002-of-00003\.safetensors/);
  const bad = checkpoint('info-bad', { index: { nothing: shardName(0) } });
  const r = await runCli(['info', bad]);
  t.equal(r.code, 1, 'an index that disagrees with its shards: exit 1');
  t.match(r.stderr, /tensor "nothing" is listed in weight_map but is not in model-00001-of-00003\.safetensors/);
});

/** sha256sum's output for the shards of `dir`, one line per shard (`wrong`: these get another file's hash). */
function writeSums(dir: string, wrong: number[] = []): Record<string, string> {
  const sums: Record<string, string> = {};
  shards.forEach((_, k) => (sums[shardName(k)] = sha256(readFileSync(join(dir, shardName(wrong.includes(k) ? (k + 1) % 3 : k))))));
  writeFileSync(join(dir, 'SHA256SUMS'), `# made by the test\n${Object.entries(sums).map(([n, h]) => `${h}  ${n}`).join('\n')}\n`);
  return sums;
}

t.test('--verify: each shard\'s SHA-256 (SHA256SUMS, --sha256) checked while it streams, in every mode; a changed byte anywhere fails it', { skip: why }, async (t) => {
  const dir = checkpoint('verified');
  const sums = writeSums(dir);
  const modes: [string, LoadOptions][] = [
    ['--plaid', { device: 'cpu', plaid: true, readers: 3, chunkSize: 4096 }],
    ['simple', { device: 'cpu', plaid: false }],
    ['--mmap', { mmap: true, readers: 2, chunkSize: 4096 }],
    ['cuda:0 --plaid', { device: 'cuda:0', plaid: true, readers: 3, chunkSize: 4096 }],
    ['cuda:0 simple', { device: 'cuda:0', plaid: false }],
  ];
  for (const [how, opts] of modes) {
    const s = await expectBytes(t, dir, { ...opts, verify: true }, `--verify ${how}`);
    t.same(s.checksums?.map((c) => [c.file, c.sha256, c.from]), shards.map((_, k) => [join(dir, shardName(k)), sums[shardName(k)], `SHA256SUMS (${join(dir, 'SHA256SUMS')})`]), `--verify ${how}: every shard checked against SHA256SUMS`);
    t.same(s.unchecked, []);
  }
  // A byte changed in a tensor of shard 2, and (still valid JSON) in the header of shard 3.
  const data = join(dir, shardName(1));
  const b = readFileSync(data);
  b[b.length - 3]! ^= 0x40;
  writeFileSync(data, b);
  for (const [how, opts] of modes) {
    await fails(t, dir, { ...opts, verify: true }, 'E_HASH_MISMATCH', /model-00002-of-00003\.safetensors: SHA-256 mismatch/, `--verify ${how}: a changed data byte`);
  }
  b[b.length - 3]! ^= 0x40;
  writeFileSync(data, b);
  const head = join(dir, shardName(2));
  const h = readFileSync(head);
  const space = h.indexOf(0x20, 8);
  t.ok(space > 8 && space < 8 + Number(h.readBigUInt64LE(0)), 'the header has a space to change');
  h[space] = 0x0a; // a newline: still JSON, the same header to the parser
  writeFileSync(head, h);
  for (const [how, opts] of modes.slice(0, 2)) {
    await fails(t, dir, { ...opts, verify: true }, 'E_HASH_MISMATCH', /model-00003-of-00003\.safetensors: SHA-256 mismatch/, `--verify ${how}: a changed header byte (the hash covers the whole file)`);
  }
  h[space] = 0x20;
  writeFileSync(head, h);
  await expectBytes(t, dir, { device: 'cpu', verify: true }, 'restored: verified again');

  // SHA256SUMS with a wrong line: the CLI says which file, exit 1.
  writeSums(dir, [0]);
  const r = await runCli(['load', dir, '--verify', '--device', 'cpu']);
  t.equal(r.code, 1, 'a wrong SHA256SUMS line: exit 1');
  t.match(r.stderr, /model-00001-of-00003\.safetensors: SHA-256 mismatch/);
  t.notMatch(r.stdout, /\S/, 'no report');
  // --sha256 wins over SHA256SUMS; the report and JSON say what was checked.
  const ok = await runCli(['load', dir, '--verify', '--device', 'cpu', '--sha256', `${shardName(0)}=${sums[shardName(0)]}`, '--json']);
  t.equal(ok.code, 0, ok.stderr);
  t.match(JSON.parse(ok.stdout).checksums, [{ from: '--sha256' }, { from: /^SHA256SUMS/ }, { from: /^SHA256SUMS/ }]);
  rmSync(join(dir, 'SHA256SUMS'));
  const part = await runCli(['load', dir, '--verify', '--device', 'cpu', '--sha256', `${shardName(1)}=${sums[shardName(1)]}`]);
  t.equal(part.code, 0, part.stderr);
  t.match(part.stderr, /--verify: no SHA-256 is known for .*model-00001-of-00003\.safetensors, .*model-00003-of-00003\.safetensors: they load unverified/);
  t.match(part.stdout, /integrity +headers validated .*SHA-256 of 1 of 3 files verified while streaming \(from --sha256\); NOT verified, no SHA-256 known: /);
  const one = await runCli(['load', join(dir, shardName(1)), '--verify', '--device', 'cpu', '--sha256', sums[shardName(1)]!]);
  t.equal(one.code, 0, one.stderr);
  t.match(one.stdout, /the file's SHA-256 verified while streaming \(from --sha256\)/);

  const usage: [string[], RegExp][] = [
    [['load', dir, '--verify', '--device', 'cpu'], /--verify: no SHA-256 is known for any of the 3 files/],
    [['load', dir, '--verify', '--device', 'cpu', '--sha256', sums[shardName(0)]!], /the checkpoint has 3 files; say which with --sha256 NAME=HEX/],
    [['load', dir, '--verify', '--device', 'cpu', '--sha256', `nope.safetensors=${sums[shardName(0)]}`], /no file of the checkpoint is named "nope\.safetensors"/],
    [['load', dir, '--verify', '--device', 'cpu', '--sha256', `${shardName(0)}=abc`], /expected 64 hex digits/],
    [['load', dir, '--device', 'cpu', '--sha256', `${shardName(0)}=${sums[shardName(0)]}`], /--sha256 gives the files' expected SHA-256 for --verify; add --verify/],
    [['load', dir, '--verify', '--device', 'cpu', '--filter', 'lm_head.*', '--sha256', `${shardName(0)}=${sums[shardName(0)]}`], /cannot be combined with --filter/],
    [['load', join(root, 'plain.tensors'), '--verify', '--device', 'cpu', '--sha256', sums[shardName(0)]!], /--sha256 is for safetensors checkpoints/],
  ];
  if (!existsSync(join(root, 'plain.tensors'))) t.equal((await runCli(['serialize', join(good, shardName(0)), '-o', join(root, 'plain.tensors')])).code, 0);
  for (const [args, message] of usage) {
    const u = await runCli(args);
    t.equal(u.code, 2, `${args.slice(2).join(' ')}: a usage error`);
    t.match(u.stderr, message);
  }
  writeFileSync(join(dir, 'SHA256SUMS'), 'not a checksum line\n');
  const badSums = await runCli(['load', dir, '--verify', '--device', 'cpu']);
  t.equal(badSums.code, 1);
  t.match(badSums.stderr, /SHA256SUMS, line 1: not a SHA-256 checksum line/);
});

t.test('--verify over HTTP: SHA256SUMS beside the index, the server\'s X-Linked-Etag, a changed byte', { skip: why }, async (t) => {
  const dir = checkpoint('verified-http');
  const sums = writeSums(dir);
  const server = await startHttpServer(root);
  const front = await startHttpServer(root);
  t.teardown(async () => {
    await server.close();
    await front.close();
  });
  const s1 = await expectBytes(t, `${server.url}/verified-http/model.safetensors.index.json`, { device: 'cuda:0', verify: true, chunkSize: 4096 }, '--verify, SHA256SUMS over HTTP');
  t.match(s1.checksums, shards.map(() => ({ from: /^SHA256SUMS \(http:\/\/.*\/verified-http\/SHA256SUMS\)$/ })));
  t.equal(s1.network?.engine, 'native');
  rmSync(join(dir, 'SHA256SUMS'));
  // Hugging Face's way: the resolve URL redirects to the CDN, stating the file's SHA-256.
  front.faults.redirectTo = server.url;
  front.faults.linkedEtag = (p) => {
    const k = shards.findIndex((_, i) => p.endsWith(shardName(i)));
    return k < 0 ? undefined : `"${sums[shardName(k)]}"`;
  };
  const s2 = await expectBytes(t, `${front.url}/verified-http/model.safetensors.index.json`, { device: 'cpu', verify: true }, '--verify, X-Linked-Etag');
  t.match(s2.checksums, shards.map(() => ({ from: 'the server (X-Linked-Etag)' })));
  // One file over HTTP: the same whole-file check, through the native fetcher.
  const single = await load(`${front.url}/verified-http/${shardName(1)}`, { device: 'cpu', verify: true, chunkSize: 4096 });
  t.match(single.stats, { files: 1, checksums: [{ sha256: sums[shardName(1)], from: 'the server (X-Linked-Etag)' }], network: { engine: 'native' } });
  for (const x of shards[1]!) t.equal(sha256(single.read(x.name)), sha256(x.data), `one file over HTTP, verified: ${x.name}`);
  single.close();
  const data = join(dir, shardName(2));
  const b = readFileSync(data);
  b[b.length - 1]! ^= 1;
  writeFileSync(data, b);
  await fails(t, `${front.url}/verified-http/model.safetensors.index.json`, { device: 'cuda:0', verify: true }, 'E_HASH_MISMATCH', /model-00003-of-00003\.safetensors: SHA-256 mismatch/, '--verify over HTTP: a changed byte');
  await fails(t, `${front.url}/verified-http/${shardName(2)}`, { device: 'cpu', verify: true }, 'E_HASH_MISMATCH', /model-00003-of-00003\.safetensors: SHA-256 mismatch/, '--verify over HTTP, one file: a changed byte');
  setEnv('TENSORIZE_NET', 'js');
  await fails(t, `${front.url}/verified-http/model.safetensors.index.json`, { device: 'cpu', verify: true }, 'E_UNSUPPORTED', /TENSORIZE_NET=js|JavaScript/, '--verify over HTTP with the JavaScript client: not supported, said so');
  setEnv('TENSORIZE_NET', undefined);
});
