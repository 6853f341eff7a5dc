// The peer harness (scripts/peers/bench_peers.py) that `tensorize bench --peers` drives, with
// the real peers of the venv scripts/peers/setup.sh makes (tensorizer, safetensors, Run:ai's
// streamer, fastsafetensors on Debian's torch, CPU): `check` describes every peer; `run` loads
// a small real file with each one that can run here and hands out exactly the file's tensors
// and bytes; the failures exit with the documented status; tensorizer and Run:ai read s3://
// from s3rver. Without the venv these are skipped with the reason (TENSORIZE_REQUIRE_PEERS=1:
// failed, and then every pinned CPU peer must be able to run).
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { findPeer } from './helpers/peers.js';
import { startS3, S3_ENV } from './helpers/servers.js';
import { BIN, bytes, ROOT, writeSafetensors } from './helpers/util.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const HARNESS = join(ROOT, 'scripts', 'peers', 'bench_peers.py');
const IDS = ['tensorizer', 'safetensors', 'runai', 'fastsafetensors', 'instanttensor', 'flashpack'];
const CPU_PEERS = ['tensorizer', 'safetensors', 'runai', 'fastsafetensors'];

const found = findPeer();
const python = typeof found === 'string' ? undefined : found.python;
const why = typeof found === 'string' ? found : false;
const required = process.env.TENSORIZE_REQUIRE_PEERS === '1';
if (why && required) t.fail(`TENSORIZE_REQUIRE_PEERS=1, but ${why}`);

interface Check {
  python: string;
  pythonVersion: string;
  torch: string | null;
  cuda: boolean;
  peers: Record<string, { version: string | null; why: string | null; formats: string[]; remote: string[] }>;
}
interface Run {
  method: string;
  version: string;
  seconds: number;
  bytes: number;
  gbPerSecond: number;
  tensors: number;
  firstTensorMs: number | null;
  peakRssBytes: number;
  baseRssBytes: number;
}

/** The harness, asynchronously (s3rver answers from this process): status, stdout, stderr. */
function harness(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(python!, [HARNESS, ...args], { env: { ...process.env, PYTHONPATH: '', PYTHONDONTWRITEBYTECODE: '1', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A few dozen tensors of several dtypes and shapes (about 3 MiB), as .safetensors and .tensors. */
function files(dir: string): { st: string; tz: string; count: number; total: number } {
  const SIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1 };
  const dtypes = Object.keys(SIZE);
  const tensors = Array.from({ length: 36 }, (_, i) => {
    const dtype = dtypes[i % dtypes.length]!;
    const shape = i % 5 === 0 ? [17] : [8 + (i % 7) * 8, 64 + (i % 3) * 32];
    return { name: `model.layers.${i >> 2}.w${i % 4}`, dtype, shape, data: bytes(shape.reduce((a, b) => a * b, 1) * SIZE[dtype]!, i + 1) };
  });
  // F32 and BF16 payloads from random bytes may hold NaNs and denormals: loaders copy bytes, fine.
  const st = join(dir, 'model.safetensors');
  const tz = join(dir, 'model.tensors');
  writeSafetensors(st, tensors);
  return { st, tz, count: tensors.length, total: tensors.reduce((a, x) => a + x.data.length, 0) };
}

function serialize(st: string, tz: string): Promise<number | null> {
  return new Promise((resolve) => spawn(process.execPath, [BIN, 'serialize', st, '-o', tz, '-q'], { stdio: 'ignore' }).on('close', resolve));
}

const lastJson = <T>(s: string): T => JSON.parse(s.trim().split('\n').pop()!) as T;

t.test('bench_peers.py check: every peer, with its version or why it cannot run here', { skip: why }, async (t) => {
  const r = await harness(['check']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim().split('\n').length, 1, 'one line on stdout');
  const c = lastJson<Check>(r.stdout);
  t.equal(c.python, python);
  t.match(c.pythonVersion, /^3\.\d+\.\d+$/);
  t.type(c.cuda, 'boolean');
  t.ok(c.torch, 'torch is found');
  t.same(Object.keys(c.peers).sort(), [...IDS].sort());
  for (const id of IDS) {
    const p = c.peers[id]!;
    t.ok(p.why === null || (typeof p.why === 'string' && p.why.length > 0), `${id}: why is null or a reason (${p.why})`);
    t.ok(p.formats.length === 1 && ['tensors', 'safetensors'].includes(p.formats[0]!), `${id}: formats ${p.formats}`);
    t.ok(p.remote.every((x) => x === 's3' || x === 'http'), `${id}: remote ${p.remote}`);
  }
  t.same(c.peers.tensorizer!.formats, ['tensors']);
  t.same(c.peers.tensorizer!.remote, ['s3', 'http']);
  if (!c.cuda) {
    for (const id of ['instanttensor', 'flashpack']) t.match(c.peers[id]!.why, /needs a CUDA device/, `${id} cannot run without CUDA`);
  }
  if (required) {
    for (const id of CPU_PEERS) t.equal(c.peers[id]!.why, null, `TENSORIZE_REQUIRE_PEERS=1: ${id} runs here`);
  }
  // The pins the harness suggests are requirements.txt's (its "#gpu" lines: the ones pack.sh carries).
  const req = readFileSync(join(ROOT, 'scripts', 'peers', 'requirements.txt'), 'utf8');
  const src = readFileSync(HARNESS, 'utf8');
  for (const dist of ['tensorizer', 'safetensors', 'runai-model-streamer', 'fastsafetensors', 'instanttensor', 'flashpack']) {
    const pin = new RegExp(`^(?:#gpu )?${dist}==(\\S+)`, 'm').exec(req)?.[1];
    t.ok(pin && src.includes(`("${dist}", "${pin}"`), `bench_peers.py pins ${dist} ${pin}, as requirements.txt does`);
  }
});

t.test('bench_peers.py run: each peer that runs here loads the file\'s every tensor and byte', { skip: why }, async (t) => {
  const dir = t.testdir();
  const f = files(dir);
  t.equal(await serialize(f.st, f.tz), 0, 'serialize');
  const c = lastJson<Check>((await harness(['check'])).stdout);
  const runnable = IDS.filter((id) => c.peers[id]!.why === null);
  t.ok(runnable.length > 0, `peers that run here: ${runnable.join(', ')}`);
  for (const id of runnable) {
    const file = c.peers[id]!.formats[0] === 'tensors' ? f.tz : f.st;
    const r = await harness(['run', id, file, '--device', c.cuda && ['instanttensor', 'flashpack'].includes(id) ? 'cuda:0' : 'cpu']);
    t.equal(r.code, 0, `${id}: ${r.stderr}`);
    t.equal(r.stdout.trim().split('\n').length, 1, `${id}: one line on stdout`);
    const d = lastJson<Run>(r.stdout);
    t.equal(d.method, id);
    t.equal(d.version, c.peers[id]!.version, `${id}: the version check reported`);
    t.equal(d.tensors, f.count, `${id}: ${d.tensors} tensors, as in the file`);
    t.equal(d.bytes, f.total, `${id}: ${d.bytes} bytes of tensor data, as in the file`);
    t.ok(d.seconds > 0 && Math.abs(d.gbPerSecond - d.bytes / d.seconds / 1e9) < 1e-6 * d.gbPerSecond, `${id}: ${d.gbPerSecond.toFixed(3)} GB/s in ${d.seconds.toFixed(4)} s`);
    t.ok(d.baseRssBytes > 0 && d.peakRssBytes >= d.baseRssBytes, `${id}: RSS ${d.baseRssBytes} before, peak ${d.peakRssBytes}`);
    if (['runai', 'instanttensor'].includes(id)) t.ok(d.firstTensorMs !== null && d.firstTensorMs >= 0 && d.firstTensorMs <= d.seconds * 1e3, `${id}: first tensor after ${d.firstTensorMs} ms`);
    else t.equal(d.firstTensorMs, null, `${id}: no first-tensor time (it hands the tensors out together)`);
  }
});

t.test('bench_peers.py run: the failures exit with their status and say why', { skip: why }, async (t) => {
  const dir = t.testdir();
  const f = files(dir);
  t.equal(await serialize(f.st, f.tz), 0, 'serialize');
  const c = lastJson<Check>((await harness(['check'])).stdout);
  const cases: [string[], number, RegExp][] = [
    [['run', 'tensorizer', f.st], 2, /tensorizer reads \.tensors files; .* is a \.safetensors file/],
    [['run', 'safetensors', f.tz], 2, /safetensors reads \.safetensors files; .* is a \.tensors file/],
    [['run', 'nope', f.st], 2, /unknown peer 'nope'/],
    [['run', 'safetensors'], 2, /^usage: /m],
    [['frobnicate'], 2, /^usage: /m],
    [['run', 'safetensors', join(dir, 'missing.safetensors')], 1, /missing\.safetensors: no such file/],
    [['run', 'safetensors', 's3://b/model.safetensors'], 3, /cannot read s3:\/\/ sources \(local files only\)/],
    [['run', 'runai', 'http://127.0.0.1:9/model.safetensors'], 3, /cannot read http:\/\/ sources/],
  ];
  if (!c.cuda) {
    cases.push([['run', 'instanttensor', f.st], 3, /needs a CUDA device/]);
    cases.push([['run', 'flashpack', f.st], 3, /needs a CUDA device/]);
    cases.push([['run', 'tensorizer', f.tz, '--device', 'cuda:0'], 3, /needs a CUDA device/]);
  }
  for (const [args, code, msg] of cases) {
    const r = await harness(args);
    t.equal(r.code, code, `${args.join(' ')}: exit ${code}\n${r.stderr}`);
    t.match(r.stderr, msg);
    t.equal(r.stdout, '', 'nothing on stdout');
  }
});

t.test('bench_peers.py run: tensorizer and Run:ai read s3:// (s3rver on loopback)', { skip: why }, async (t) => {
  const dir = t.testdir();
  const f = files(dir);
  t.equal(await serialize(f.st, f.tz), 0, 'serialize');
  const c = lastJson<Check>((await harness(['check'])).stdout);
  const s3peers = ['tensorizer', 'runai'].filter((id) => c.peers[id]!.why === null && c.peers[id]!.remote.includes('s3'));
  if (required) t.same(s3peers, ['tensorizer', 'runai'], 'TENSORIZE_REQUIRE_PEERS=1: both read s3:// here');
  if (!s3peers.length) return;
  const s3 = await startS3(join(dir, 'data'));
  t.teardown(() => s3.close());
  const client = new S3Client({ endpoint: s3.endpoint, region: S3_ENV.AWS_REGION, forcePathStyle: true, credentials: { accessKeyId: S3_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: S3_ENV.AWS_SECRET_ACCESS_KEY } });
  for (const file of [f.st, f.tz]) await client.send(new PutObjectCommand({ Bucket: 'b', Key: `m/${file.split('/').pop()}`, Body: readFileSync(file) }));
  client.destroy();
  for (const id of s3peers) {
    const key = c.peers[id]!.formats[0] === 'tensors' ? 'm/model.tensors' : 'm/model.safetensors';
    const r = await harness(['run', id, `s3://b/${key}`], { ...S3_ENV, AWS_ENDPOINT_URL: s3.endpoint });
    t.equal(r.code, 0, `${id} s3://: ${r.stderr}`);
    const d = lastJson<Run>(r.stdout);
    t.equal(d.tensors, f.count, `${id} over S3: every tensor`);
    t.equal(d.bytes, f.total, `${id} over S3: every byte`);
  }
});
