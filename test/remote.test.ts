/**
 * Remote sources against real servers on loopback: a node:http server with Range support
 * (and injected faults) and an S3-compatible server (s3rver). `info` and `verify` over
 * http:// and s3:// must give exactly what they give for the local file, survive resets,
 * 503s and servers without range support, and refuse an object that changes mid-read.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { TensorType } from '../src/format/constants.js';
import { writeTensorizer } from '../src/ops/serialize.js';
import { openInput } from '../src/inputs/index.js';
import { verifyFile } from '../src/ops/verify.js';
import { TensorizerFile } from '../src/format/reader.js';
import { FileSource } from '../src/sources/file.js';
import { HttpSource } from '../src/sources/http.js';
import { makeS3Client, readS3cfg, S3Source } from '../src/sources/s3.js';
import { planReads } from '../src/engine/remote.js';
import { load } from '../src/ops/load.js';
import { nativeAvailable } from '../src/native/binding.js';
import { BIN, ROOT, runCli as cli, sha256, VECTORS, setEnv } from './helpers/util.js';
import { NGINX, startHttpServer, startNginx, startProxy, startS3, S3_ENV, useS3Env } from './helpers/servers.js';

const FILES = readdirSync(VECTORS).filter((f) => f.endsWith('.tensors') && !f.startsWith('encrypted'));
const FAST = { retries: 5, baseDelayMs: 1 };

async function localVerdict(f: string) {
  const src = await FileSource.open(join(VECTORS, f));
  try {
    const r = await verifyFile(src);
    return { ...r, file: f };
  } finally {
    await src.close();
  }
}

t.test('planReads covers every tensor byte, in order, in chunks, spanning small gaps', async (t) => {
  const jobs = [
    { offset: 100, length: 10 },
    { offset: 120, length: 0 },
    { offset: 130, length: 50 },
    { offset: 5000, length: 7 },
  ].map((j) => ({ ...j, prefix: [], crc32: true, sha256: true }));
  t.same(planReads(jobs, 16, 100), [[100, 16], [116, 16], [132, 16], [148, 16], [164, 16], [5000, 7]]);
  t.same(planReads(jobs, 1 << 20, 10_000), [[100, 4907]]);
});

t.test('HTTP: info and verify over http:// equal the local results, every vector', async (t) => {
  const http = await startHttpServer(VECTORS);
  t.teardown(() => http.close());
  for (const f of FILES) {
    const local = await localVerdict(f);
    for (const chunkSize of [4096, 8 << 20]) {
      const src = await HttpSource.open(`${http.url}/${f}`, FAST);
      const tf = await TensorizerFile.open(src);
      const ltf = await TensorizerFile.open(await FileSource.open(join(VECTORS, f)));
      t.same(tf.entries, ltf.entries, `${f}: the same index over HTTP`);
      await ltf.source.close();
      const r = await verifyFile(src, { chunkSize, concurrency: 4 });
      await src.close();
      t.same({ ...r, file: f }, local, `${f}: the same verdict over HTTP (chunk ${chunkSize})`);
    }
    // The hashes of remote bytes run natively on libuv threads; the JavaScript hasher must agree.
    setEnv('TENSORIZE_ENGINE', 'js');
    try {
      const src = await HttpSource.open(`${http.url}/${f}`, FAST);
      const r = await verifyFile(src, { chunkSize: 4096, concurrency: 2 });
      await src.close();
      t.same({ ...r, file: f }, local, `${f}: the same verdict with TENSORIZE_ENGINE=js`);
    } finally {
      setEnv('TENSORIZE_ENGINE', undefined);
    }
  }
});

t.test('HTTP faults: resets, 503s, no range support, a changing object, 404, auth', async (t) => {
  const http = await startHttpServer(VECTORS);
  t.teardown(() => http.close());
  const f = 'many_tensors.tensors';
  const local = await localVerdict(f);
  const verifyOver = async (url: string, retries: string[] = []) => {
    const src = await HttpSource.open(url, { ...FAST, onRetry: (m) => retries.push(m), onWarning: (m) => retries.push(`warning: ${m}`) });
    try {
      return { ...(await verifyFile(src, { chunkSize: 64 << 10, concurrency: 3 })), file: f };
    } finally {
      await src.close();
    }
  };

  let retries: string[] = [];
  const reset = await HttpSource.open(`${http.url}/${f}`, { ...FAST, onRetry: (m) => retries.push(m) });
  http.faults.resetAfterBytes = 1000;
  const whole = await reset.read(0, reset.size);
  await reset.close();
  t.ok(whole.equals(readFileSync(join(VECTORS, f))), 'a read cut after 1000 bytes is resumed and complete');
  t.match(retries.join('\n'), /connection lost after 1000 of/, 'the retry says where it resumed');
  const resumed = http.requests[http.requests.length - 1]!;
  t.equal(resumed.range, `bytes=1000-${whole.length - 1}`, 'the retry asks only for the missing bytes');

  retries = [];
  http.faults.unavailable = 3;
  t.same(await verifyOver(`${http.url}/${f}`, retries), local, 'three 503s are retried');
  t.equal(retries.filter((m) => /HTTP 503/.test(m)).length, 3);

  http.faults.unavailable = 100;
  await t.rejects(HttpSource.open(`${http.url}/${f}`, { retries: 2, baseDelayMs: 1 }), { code: 'E_IO', message: /giving up after 3 attempts: HTTP 503/ });
  http.faults.unavailable = 0;

  retries = [];
  http.faults.ignoreRange = true;
  t.same(await verifyOver(`${http.url}/${f}`, retries), local, 'a server without ranges: one download, same verdict');
  t.match(retries.join('\n'), /does not support range requests/);
  http.faults.ignoreRange = false;

  const src = await HttpSource.open(`${http.url}/${f}`, FAST);
  http.faults.changed = true;
  await t.rejects(src.read(0, 100), { code: 'E_FILE_CHANGED' }, 'an object that changed since open is refused');
  http.faults.changed = false;
  await src.close();

  await t.rejects(HttpSource.open(`${http.url}/missing.tensors`, FAST), { code: 'E_NOT_FOUND' });
  await t.rejects(HttpSource.open('http://127.0.0.1:1/x.tensors', { retries: 1, baseDelayMs: 1 }), { code: 'E_IO', message: /giving up/ }, 'nothing listening: retried, then a clear error');

  const guarded = await startHttpServer(VECTORS, { requireHeader: ['authorization', 'Bearer sesame'] });
  t.teardown(() => guarded.close());
  let r = await cli(['verify', `${guarded.url}/${f}`]);
  t.equal(r.code, 1);
  t.match(r.stderr, /access denied \(HTTP 401\)/);
  t.match(r.stderr, /--header "Authorization: Bearer <token>"/);
  r = await cli(['verify', `${guarded.url}/${f}`, '--header', 'Authorization: Bearer sesame', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { ok: true, hashesChecked: local.hashesChecked });
  r = await cli(['info', `${http.url}/${f}`, '--json']);
  const l = await cli(['info', join(VECTORS, f), '--json']);
  t.same({ ...JSON.parse(r.stdout), file: 0 }, { ...JSON.parse(l.stdout), file: 0 }, 'info over HTTP prints what info prints locally');
});

t.test('S3: verify s3:// through s3rver, with the SDK chain and with ~/.s3cfg', async (t) => {
  const dir = t.testdir();
  const s3 = await startS3(join(dir, 'data'));
  t.teardown(() => s3.close());
  useS3Env(t);
  const { client } = makeS3Client({ endpoint: s3.endpoint });
  for (const f of FILES) await client.send(new PutObjectCommand({ Bucket: 'b', Key: `models/${f}`, Body: readFileSync(join(VECTORS, f)) }));
  client.destroy();

  for (const f of FILES) {
    const src = await S3Source.open(`s3://b/models/${f}`, { endpoint: s3.endpoint, ...FAST });
    t.equal(src.size, readFileSync(join(VECTORS, f)).length);
    const r = await verifyFile(src, { chunkSize: 4096, concurrency: 4 });
    await src.close();
    t.same({ ...r, file: f }, await localVerdict(f), `${f}: the same verdict over S3`);
  }
  await t.rejects(S3Source.open('s3://b/models/missing.tensors', { endpoint: s3.endpoint, ...FAST }), { code: 'E_NOT_FOUND' });

  // Faults on the way to S3: two 503 SlowDown answers, then a body cut after 1000 bytes.
  let gets = 0;
  const faulty = await startProxy(s3.endpoint, (method) => {
    if (method !== 'GET') return 'pass';
    gets++;
    return gets <= 2 ? 503 : gets === 3 ? { resetAfter: 1000 } : 'pass';
  });
  t.teardown(() => faulty.close());
  const retries: string[] = [];
  const big = 'dtypes_v1.tensors';
  const viaProxy = await S3Source.open(`s3://b/models/${big}`, { endpoint: faulty.endpoint, ...FAST, onRetry: (m) => retries.push(m) });
  const whole = await viaProxy.read(0, viaProxy.size);
  t.ok(whole.equals(readFileSync(join(VECTORS, big))), 'S3 reads survive 503s and a reset, and resume');
  t.match(retries.join('\n'), /HTTP 503/);
  t.match(retries.join('\n'), /connection lost after 1000 of/);
  const r2 = await verifyFile(viaProxy, { chunkSize: 64 << 10 });
  await viaProxy.close();
  t.same({ ...r2, file: big }, await localVerdict(big), 'and verify through the faulty proxy gives the local verdict');
  await t.rejects(S3Source.open('s3:/b', {}), { code: 'E_USAGE' });

  const f = 'module_bf16_v2.tensors';
  let r = await cli(['verify', `s3://b/models/${f}`, '--json'], { ...S3_ENV, AWS_ENDPOINT_URL_S3: s3.endpoint });
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { ok: true });
  r = await cli(['verify', `s3://b/models/${f}`, '--endpoint', s3.endpoint, '--json'], { ...S3_ENV, AWS_REGION: undefined });
  t.equal(r.code, 0, `--endpoint, no region: us-east-1 is assumed. ${r.stderr}`);

  // s3cmd's config, as tensorizer users have it: used when the environment names no AWS credentials.
  const cfg = join(dir, 's3cfg');
  writeFileSync(cfg, `[default]\naccess_key = S3RVER\nsecret_key = S3RVER\nhost_base = ${s3.endpoint.replace('http://', '')}\nhost_bucket = ${s3.endpoint.replace('http://', '')}\nuse_https = False\n`);
  t.match(readS3cfg(cfg), { accessKey: 'S3RVER', endpoint: s3.endpoint });
  const noAws = { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_REGION: undefined, AWS_PROFILE: undefined, HOME: dir, S3CFG: cfg };
  r = await cli(['info', `s3://b/models/${f}`, '--json'], noAws);
  t.equal(r.code, 0, r.stderr);
  t.equal(JSON.parse(r.stdout).tensorCount, JSON.parse((await cli(['info', join(VECTORS, f), '--json'])).stdout).tensorCount);
  r = await cli(['info', `s3://b/models/${f}`], { ...noAws, S3CFG: join(dir, 'none'), AWS_ACCESS_KEY_ID: 'WRONG', AWS_SECRET_ACCESS_KEY: 'WRONG', AWS_ENDPOINT_URL_S3: s3.endpoint });
  t.equal(r.code, 1, 'bad credentials fail cleanly');
  t.match(r.stderr, /access denied|InvalidAccessKeyId|SignatureDoesNotMatch/);
});

t.test('load from http:// and s3:// into host memory: every tensor matches the manifest', { skip: nativeAvailable() ? false : 'the native addon is not built' }, async (t) => {
  const http = await startHttpServer(VECTORS);
  t.teardown(() => http.close());
  const dir = t.testdir();
  const s3 = await startS3(join(dir, 'data'));
  t.teardown(() => s3.close());
  const { client } = makeS3Client({ endpoint: s3.endpoint });
  const s3opts = { endpoint: s3.endpoint, ...FAST };
  Object.assign(process.env, S3_ENV);
  t.teardown(() => {
    for (const k of Object.keys(S3_ENV)) delete process.env[k];
  });
  for (const f of FILES) await client.send(new PutObjectCommand({ Bucket: 'b', Key: f, Body: readFileSync(join(VECTORS, f)) }));
  client.destroy();
  for (const f of FILES) {
    const manifest = JSON.parse(readFileSync(join(VECTORS, f.replace(/\.tensors$/, '.json')), 'utf8')) as { tensors: { name: string | unknown[]; sha256: string; meta?: boolean }[] };
    for (const [url, verify] of [[`${http.url}/${f}`, true], [`${http.url}/${f}`, false], [`s3://b/${f}`, true]] as const) {
      const model = await load(url, { device: 'cpu', verify, concurrency: 3, source: { http: FAST, s3: s3opts } });
      try {
        let same = 0;
        for (const want of manifest.tensors) {
          const name = typeof want.name === 'string' ? want.name : JSON.stringify(want.name);
          const got = model.tensors.find((x) => x.name === name);
          if (got && (want.meta ? got.device === 'meta' : sha256(model.read(name)) === want.sha256)) same++;
        }
        t.equal(same, manifest.tensors.length, `${url} verify=${verify}: all ${manifest.tensors.length} tensors`);
        t.equal(model.stats.verified, verify);
      } finally {
        model.close();
      }
    }
  }

  // A corrupted copy on the server: --verify names the tensor; a reset mid-load is resumed.
  const f = 'module_bf16_v2.tensors';
  const bad = readFileSync(join(VECTORS, f));
  const tf = await TensorizerFile.open(await FileSource.open(join(VECTORS, f)));
  const victim = [...tf.entries].sort((a, b) => b.dataLength - a.dataLength)[0]!;
  await tf.source.close();
  bad[victim.dataOffset + 5]! ^= 1;
  writeFileSync(join(dir, 'bad.tensors'), bad);
  const badServer = await startHttpServer(dir);
  t.teardown(() => badServer.close());
  await t.rejects(load(`${badServer.url}/bad.tensors`, { device: 'cpu', verify: true, source: { http: FAST } }), { code: 'E_HASH_MISMATCH', message: new RegExp(victim.name.replace(/[.[\]]/g, '\\$&')) });
  const model = await load(`${badServer.url}/bad.tensors`, { device: 'cpu', source: { http: FAST } });
  t.equal(model.read(victim.name)[5]! ^ readFileSync(join(VECTORS, f))[victim.dataOffset + 5]!, 1, 'without --verify the flipped bit arrives as it is');
  model.close();
  http.faults.resetAfterBytes = 300;
  const again = await load(`${http.url}/${f}`, { device: 'cpu', verify: true, concurrency: 2, source: { http: FAST } });
  t.equal(again.stats.tensors, tf.entries.length, 'a reset mid-load is resumed and the hashes still match');
  again.close();
  const r = await cli(['load', `${http.url}/${f}`, '--device', 'cpu', '--verify', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { ok: true, verified: true, tensors: tf.entries.length });
});

t.test('serialize -o s3://: the same bytes as a local serialize; failures and Ctrl-C leave no object', async (t) => {
  const dir = t.testdir();
  const s3 = await startS3(join(dir, 'data'));
  // One teardown, in order: clients and proxies hold connections that s3rver waits for.
  const closers: (() => unknown)[] = [];
  t.teardown(async () => {
    for (const c of closers.reverse()) await c();
  });
  closers.push(() => s3.close());
  Object.assign(process.env, S3_ENV);
  t.teardown(() => {
    for (const k of Object.keys(S3_ENV)) delete process.env[k];
  });
  const { writeSyntheticSafetensors } = await import('../src/ops/synthetic.js');
  await writeSyntheticSafetensors(join(dir, 'model.safetensors'), 13 << 20);
  const { client } = makeS3Client({ endpoint: s3.endpoint });
  closers.push(() => client.destroy());
  const objectBytes = async (key: string): Promise<Buffer | undefined> => {
    try {
      const r = await client.send(new GetObjectCommand({ Bucket: 'b', Key: key }));
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch {
      return undefined;
    }
  };
  const fix = join(ROOT, 'fixtures', 'pytorch');
  for (const [label, input] of [['synthetic', join(dir, 'model.safetensors')], ['zip.pt (gathered views)', join(fix, 'zip.pt')], ['big-endian', join(fix, 'big_endian.pt')]] as const) {
    const m = await openInput(input);
    const tensors = m.tensors.map((x) => ({ path: x.path, type: TensorType.STATE_DICT, dtype: x.dtype, shape: x.shape, data: x.data }));
    await writeTensorizer(join(dir, 'local.tensors'), tensors);
    const key = `out/${label.replace(/\W+/g, '_')}.tensors`;
    await writeTensorizer(`s3://b/${key}`, tensors, { s3: { endpoint: s3.endpoint, partSize: 5 << 20, ...FAST } });
    const got = await objectBytes(key);
    t.ok(got?.equals(readFileSync(join(dir, 'local.tensors'))), `${label}: the object holds exactly the bytes of a local serialize (${got?.length} bytes)`);
  }

  // UploadPart 2 fails every time: the upload is aborted, no object appears.
  const failing = await startProxy(s3.endpoint, (method, url) => (method === 'PUT' && /partNumber=2\b/.test(url) ? 500 : 'pass'));
  closers.push(() => failing.close());
  const m = await openInput(join(dir, 'model.safetensors'));
  const tensors = m.tensors.map((x) => ({ path: x.path, type: TensorType.STATE_DICT, dtype: x.dtype, shape: x.shape, data: x.data }));
  await t.rejects(writeTensorizer('s3://b/out/failed.tensors', tensors, { s3: { endpoint: failing.endpoint, partSize: 5 << 20, retries: 2, baseDelayMs: 1 } }), { code: 'E_IO', message: /part 2: giving up after 3 attempts/ });
  t.ok(failing.seen.some((s) => /^DELETE .*uploadId=/.test(s)), 'the multipart upload was aborted');
  t.equal(await objectBytes('out/failed.tensors'), undefined, 'no object was left behind');

  // Ctrl-C while part 2 is in flight: exit 130, the upload is aborted, no object.
  const holding = await startProxy(s3.endpoint, (method, url) => (method === 'PUT' && /partNumber=2\b/.test(url) ? 'hold' : 'pass'));
  closers.push(() => holding.close());
  const child = spawn(process.execPath, [BIN, 'serialize', join(dir, 'model.safetensors'), '-o', 's3://b/out/killed.tensors', '--endpoint', holding.endpoint, '--part-size', '5MiB'], { env: { ...process.env, ...S3_ENV } });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  // Until part 2 is in flight (however busy the machine; the tap timeout guards a hang).
  while (!holding.seen.some((s) => /partNumber=2\b/.test(s)) && child.exitCode === null) await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGINT');
  const code = await new Promise((r) => child.on('close', (c) => r(c)));
  t.equal(code, 130, stderr);
  t.ok(holding.seen.some((s) => /^DELETE .*uploadId=/.test(s)), 'Ctrl-C aborted the multipart upload');
  t.equal(await objectBytes('out/killed.tensors'), undefined, 'no object was left behind');
  const r = await cli(['serialize', join(dir, 'model.safetensors'), '-o', 's3://b/out/cli.tensors', '--endpoint', s3.endpoint, '--json']);
  t.equal(r.code, 0, r.stderr);
  const v = await cli(['verify', 's3://b/out/cli.tensors', '--endpoint', s3.endpoint]);
  t.equal(v.code, 0, `serialize -o s3:// then verify s3://: ${v.stderr}`);
});

t.test('nginx: info, verify and load over the server most models are served from', { skip: NGINX ? false : 'nginx is not installed (apt-get install nginx-light; .ci/run installs it)' }, async (t) => {
  const nginx = await startNginx(VECTORS);
  t.teardown(() => nginx.close());
  for (const f of FILES) {
    const src = await HttpSource.open(`${nginx.url}/${f}`, FAST);
    const r = await verifyFile(src, { chunkSize: 4096, concurrency: 4 });
    await src.close();
    t.same({ ...r, file: f }, await localVerdict(f), `${f}: the same verdict through nginx`);
  }
  const f = 'module_bf16_v2.tensors';
  const r = await cli(['load', `${nginx.url}/${f}`, '--device', 'cpu', '--verify', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { ok: true, verified: true });
  await t.rejects(HttpSource.open(`${nginx.url}/missing.tensors`, FAST), { code: 'E_NOT_FOUND' });
});

t.test('export from http:// gives the same safetensors file as a local export, and checks hashes', async (t) => {
  const dir = t.testdir();
  const http = await startHttpServer(VECTORS);
  t.teardown(() => http.close());
  const { exportSafetensors } = await import('../src/ops/export.js');
  for (const f of ['dtypes_v1.tensors', 'module_bf16_v2.tensors', 'meta_marker_v4.tensors']) {
    const local = await FileSource.open(join(VECTORS, f));
    await exportSafetensors(local, join(dir, 'local.safetensors'));
    await local.close();
    // The native fetcher (writing in place), then the JavaScript path.
    for (const net of [undefined, 'js']) {
      if (net) setEnv('TENSORIZE_NET', net);
      try {
        const src = await HttpSource.open(`${http.url}/${f}`, FAST);
        await exportSafetensors(src, join(dir, 'remote.safetensors'), { concurrency: 3 });
        await src.close();
      } finally {
        setEnv('TENSORIZE_NET', undefined);
      }
      t.ok(readFileSync(join(dir, 'remote.safetensors')).equals(readFileSync(join(dir, 'local.safetensors'))), `${f}: identical export (${net ?? 'native'})`);
    }
  }
  const bad = readFileSync(join(VECTORS, 'module_bf16_v2.tensors'));
  const tf = await TensorizerFile.open(await FileSource.open(join(VECTORS, 'module_bf16_v2.tensors')));
  const victim = tf.entries[tf.entries.length - 1]!;
  await tf.source.close();
  bad[victim.dataOffset]! ^= 0x80;
  writeFileSync(join(dir, 'bad.tensors'), bad);
  const server = await startHttpServer(dir);
  t.teardown(() => server.close());
  const r = await cli(['export', `${server.url}/bad.tensors`, '-o', join(dir, 'bad.safetensors')]);
  t.equal(r.code, 1);
  t.match(r.stderr, /: tensor "[^"]+" does not match its stored (CRC32|SHA-256|CRC32 and SHA-256)\n(.*\n)*  hint: nothing was exported/);
  t.notOk(readdirSync(dir).includes('bad.safetensors'), 'no output file');
});
