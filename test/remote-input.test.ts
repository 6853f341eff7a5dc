/**
 * serialize from http(s):// and s3:// inputs: one safetensors file, a sharded safetensors
 * index, a sharded PyTorch index, to a local file and to s3://, with the native fetcher and
 * with the JavaScript client; every output byte-identical to serializing the local copy.
 * A file holding strided PyTorch views is downloaded first (as from a server without
 * ranges); shard names that leave the index's directory are refused.
 */
import t from 'tap';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { nativeAvailable } from '../src/native/binding.js';
import { makeS3Client } from '../src/sources/s3.js';
import { bytes, ROOT, runCli, writeSafetensors } from './helpers/util.js';
import { startHttpServer, startS3, S3_ENV, useS3Env } from './helpers/servers.js';

const cli = runCli;

/** A small model as one safetensors file and as two shards with an index. */
function makeModels(dir: string): void {
  const tensors = Array.from({ length: 12 }, (_, i) => ({
    name: `model.layers.${i}.weight`,
    dtype: i % 3 === 0 ? 'BF16' : i % 3 === 1 ? 'F32' : 'I8',
    shape: [16 + i, 9],
    data: bytes((16 + i) * 9 * (i % 3 === 0 ? 2 : i % 3 === 1 ? 4 : 1), i + 1),
  }));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  mkdirSync(join(dir, 'sharded'));
  writeSafetensors(join(dir, 'sharded', 'model-00001-of-00002.safetensors'), tensors.slice(0, 5));
  writeSafetensors(join(dir, 'sharded', 'model-00002-of-00002.safetensors'), tensors.slice(5));
  const weightMap = Object.fromEntries(tensors.map((x, i) => [x.name, i < 5 ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors']));
  writeFileSync(join(dir, 'sharded', 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
}

t.test('serialize from http:// gives the bytes a local serialize gives (native fetcher and undici)', async (t) => {
  const dir = t.testdir();
  makeModels(dir);
  cpSync(join(ROOT, 'fixtures/pytorch/sharded'), join(dir, 'pt-sharded'), { recursive: true });
  cpSync(join(ROOT, 'fixtures/pytorch/zip.pt'), join(dir, 'zip.pt'));
  const http = await startHttpServer(dir);
  t.teardown(() => http.close());
  const cases: [string, string][] = [
    ['model.safetensors', 'a safetensors file'],
    ['sharded/model.safetensors.index.json', 'a sharded safetensors index'],
    ['pt-sharded/pytorch_model.bin.index.json', 'a sharded PyTorch index'],
  ];
  for (const [rel, what] of cases) {
    const local = await cli(['serialize', join(dir, rel), '-o', join(dir, 'local.tensors'), '--json']);
    t.equal(local.code, 0, local.stderr);
    for (const net of [undefined, 'js']) {
      const r = await cli(['serialize', `${http.url}/${rel}`, '-o', join(dir, 'remote.tensors'), '--json', '--read-concurrency', '3'], { TENSORIZE_NET: net });
      t.equal(r.code, 0, `${what} (${net ?? 'native'}): ${r.stderr}`);
      t.ok(readFileSync(join(dir, 'remote.tensors')).equals(readFileSync(join(dir, 'local.tensors'))), `${what} (${net ?? 'native'}): identical output`);
      t.match(JSON.parse(r.stdout), { ok: true, input: `${http.url}/${rel}` });
    }
  }
  // Strided views cannot be read by range: such a file is downloaded first (with a
  // warning), as a server without ranges is; either way the output is what a local run gives.
  const local = await cli(['serialize', join(dir, 'zip.pt'), '-o', join(dir, 'zlocal.tensors')]);
  t.equal(local.code, 0, local.stderr);
  let r = await cli(['serialize', `${http.url}/zip.pt`, '-o', join(dir, 'z.tensors')]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /holds strided views, which are not read by range; downloading it/);
  t.ok(readFileSync(join(dir, 'z.tensors')).equals(readFileSync(join(dir, 'zlocal.tensors'))), 'views: downloaded first, then gathered locally: identical output');
  http.faults.ignoreRange = true;
  r = await cli(['serialize', `${http.url}/zip.pt`, '-o', join(dir, 'z.tensors')]);
  http.faults.ignoreRange = false;
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /does not support range requests/);
  t.ok(readFileSync(join(dir, 'z.tensors')).equals(readFileSync(join(dir, 'zlocal.tensors'))), 'no ranges: downloaded first: identical output');
  // An index may only name shards beside it.
  for (const shard of ['../model.safetensors', 'http://127.0.0.1:1/x.safetensors', '/etc/passwd', 'a\\..\\..\\b']) {
    writeFileSync(join(dir, 'sharded', 'evil.safetensors.index.json'), JSON.stringify({ weight_map: { x: shard } }));
    r = await cli(['serialize', `${http.url}/sharded/evil.safetensors.index.json`, '-o', join(dir, 'e.tensors')]);
    t.equal(r.code, 1, `shard ${shard}`);
    t.match(r.stderr, /outside the index's directory/, `shard ${shard}: refused`);
  }
});

t.test('serialize s3:// to s3://: the object a local serialize would upload', { skip: nativeAvailable() ? false : 'the native addon is not built' }, async (t) => {
  const dir = t.testdir();
  makeModels(dir);
  const s3 = await startS3(join(dir, 'data'));
  t.teardown(() => s3.close());
  const env = { ...S3_ENV, AWS_ENDPOINT_URL_S3: s3.endpoint };
  useS3Env(t);
  const { client } = makeS3Client({ endpoint: s3.endpoint });
  t.teardown(() => client.destroy());
  await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'in/model.safetensors', Body: readFileSync(join(dir, 'model.safetensors')) }));
  const local = await cli(['serialize', join(dir, 'model.safetensors'), '-o', join(dir, 'local.tensors')]);
  t.equal(local.code, 0, local.stderr);
  for (const net of [undefined, 'js']) {
    const r = await cli(['serialize', 's3://b/in/model.safetensors', '-o', 's3://b/out/model.tensors', '--json', '--part-size', '5MiB'], { ...env, TENSORIZE_NET: net });
    t.equal(r.code, 0, r.stderr);
    const got = await client.send(new GetObjectCommand({ Bucket: 'b', Key: 'out/model.tensors' }));
    const body = Buffer.from(await got.Body!.transformToByteArray());
    t.ok(body.equals(readFileSync(join(dir, 'local.tensors'))), `s3 -> s3 (${net ?? 'native'}): identical object`);
  }
  const r = await cli(['serialize', 's3://b/in/missing.safetensors', '-o', join(dir, 'x.tensors')], env);
  t.equal(r.code, 1);
  t.match(r.stderr, /no such object/);
});
