// HTTP proxies from the environment (src/sources/proxy.ts): the NO_PROXY rules, and real
// loads through a real forward proxy on loopback (CONNECT tunnels, Basic credentials) by
// every client: the native fetcher (HTTP and HTTPS), undici (TENSORIZE_NET=js), the no-range
// download, and S3 (the SDK's requests and the presigned reads).
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load, type LoadOptions } from '../src/ops/load.js';
import { nativeAvailable } from '../src/native/binding.js';
import { bypassesProxy, proxyFor } from '../src/sources/proxy.js';
import { makeS3Client } from '../src/sources/s3.js';
import { httpTarget } from '../src/sources/http.js';
import { fetchNative } from '../src/engine/fetch.js';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { startForwardProxy, startHttpServer, startS3, useS3Env, type ForwardProxy } from './helpers/servers.js';
import { ROOT, runCli, sha256, VECTORS, setEnv } from './helpers/util.js';

const skip = nativeAvailable() ? false : 'the native addon is not built';
const PROXY_VARS = ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'no_proxy', 'NO_PROXY'];
const FAST = { retries: 1, baseDelayMs: 1, timeoutMs: 5000 };
const CA = readFileSync(join(ROOT, 'fixtures/tls/ca.pem'));
const TLS = { key: readFileSync(join(ROOT, 'fixtures/tls/server.key')), cert: readFileSync(join(ROOT, 'fixtures/tls/server.pem')) };

/** Set proxy variables for this test only (the others cleared). */
function proxyEnv(t: Test, vars: Record<string, string>): void {
  const saved = Object.fromEntries(PROXY_VARS.map((k) => [k, process.env[k]]));
  for (const k of PROXY_VARS) delete process.env[k];
  Object.assign(process.env, vars);
  t.teardown(() => {
    for (const k of PROXY_VARS) delete process.env[k];
    for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
  });
}

/** Load over the network and count the tensors whose bytes match the manifest. */
async function loadCount(url: string, f: string, opts: LoadOptions): Promise<{ same: number; total: number; engine?: string }> {
  const m = JSON.parse(readFileSync(join(VECTORS, f.replace(/\.tensors$/, '.json')), 'utf8')) as { tensors: { name: string | unknown[]; sha256?: string; meta?: boolean }[] };
  const model = await load(url, { device: 'cpu', ...opts });
  try {
    let same = 0;
    for (const want of m.tensors) {
      const name = typeof want.name === 'string' ? want.name : JSON.stringify(want.name);
      if (want.meta || sha256(model.read(name)) === want.sha256) same++;
    }
    return { same, total: m.tensors.length, engine: model.stats.network?.engine };
  } finally {
    model.close();
  }
}

t.test('which requests go through the proxy', async (t) => {
  const env = { https_proxy: 'http://low:8080', HTTPS_PROXY: 'http://up:8080', HTTP_PROXY: 'http://plain:3128' };
  t.match(proxyFor('https://hub.example/x', env), { host: 'low', port: 8080, display: 'http://low:8080' }, 'lower case wins');
  t.match(proxyFor('http://hub.example/x', env), { host: 'plain', port: 3128 });
  t.match(proxyFor('https://hub.example/x', { HTTP_PROXY: 'plain:3128' }), { host: 'plain', port: 3128 }, 'https falls back to HTTP_PROXY; a bare host:port is http://');
  t.equal(proxyFor('https://hub.example/x', {}), undefined, 'no variables: direct');
  t.equal(proxyFor('http://hub.example/x', { HTTPS_PROXY: 'http://p:1' }), undefined, 'HTTPS_PROXY does not apply to http://');
  const auth = proxyFor('https://a.b/', { HTTPS_PROXY: 'http://us%40er:p%3Ass@proxy:8080' })!;
  t.equal(auth.authorization, `Basic ${Buffer.from('us@er:p:ss').toString('base64')}`, 'credentials from the URL, decoded');
  t.equal(auth.display, 'http://proxy:8080', 'and kept out of messages');
  t.throws(() => proxyFor('https://a.b/', { HTTPS_PROXY: 'https://proxy:443' }), { code: 'E_UNSUPPORTED' });
  t.throws(() => proxyFor('https://a.b/', { HTTPS_PROXY: 'http://[bad' }), { code: 'E_USAGE' });
  for (const [host, port, noProxy, want] of [
    ['hub.example', 443, 'hub.example', true],
    ['cdn.hub.example', 443, 'hub.example', true],
    ['cdn.hub.example', 443, '.hub.example', true],
    ['cdn.hub.example', 443, '*.hub.example', true],
    ['nothub.example', 443, 'hub.example', false],
    ['hub.example', 443, 'hub.example:8443', false],
    ['hub.example', 8443, 'hub.example:8443', true],
    ['anything', 80, '*', true],
    ['10.0.0.1', 80, 'localhost, 10.0.0.1', true],
    ['[::1]', 80, '::1', true],
    ['[::1]', 80, '[::1]:80', true],
    ['[::1]', 81, '[::1]:80', false],
    ['HUB.example', 443, 'hub.EXAMPLE', true],
    ['hub.example', 443, '', false],
  ] as const) {
    t.equal(bypassesProxy(host, port, noProxy), want, `${host}:${port} with NO_PROXY=${JSON.stringify(noProxy)}`);
  }
});

t.test('HTTP and HTTPS loads through a proxy that wants credentials, both engines', { skip }, async (t) => {
  const http = await startHttpServer(VECTORS);
  const https = await startHttpServer(VECTORS, { tls: TLS });
  const proxy = await startForwardProxy({ auth: ['tz', 'p@ss word'] });
  t.teardown(async () => Promise.all([http.close(), https.close(), proxy.close()]));
  proxyEnv(t, { HTTP_PROXY: proxy.url });
  for (const net of ['native', 'js']) {
    if (net === 'js') setEnv('TENSORIZE_NET', 'js');
    else setEnv('TENSORIZE_NET', undefined);
    t.teardown(() => setEnv('TENSORIZE_NET', undefined));
    for (const [base, what] of [
      [http.url, 'http'],
      [`https://localhost:${new URL(https.url).port}`, 'https'],
    ] as const) {
      const before = proxy.tunnels.length;
      const r = await loadCount(`${base}/module_bf16_v2.tensors`, 'module_bf16_v2.tensors', { verify: true, chunkSize: 8192, concurrency: 3, source: { http: { ...FAST, ca: CA } } });
      t.equal(r.engine, net);
      t.equal(r.same, r.total, `${what} via the proxy (${net}): every tensor`);
      const host = new URL(base).host;
      t.ok(proxy.tunnels.slice(before).length > 0 && proxy.tunnels.slice(before).every((x) => x === host.replace('localhost', 'localhost')), `${what} (${net}): every connection tunnelled to ${host}`);
    }
  }
  setEnv('TENSORIZE_NET', undefined);

  // NO_PROXY: straight to the server.
  proxyEnv(t, { HTTP_PROXY: proxy.url, NO_PROXY: '127.0.0.1' });
  const before = proxy.tunnels.length;
  const direct = await loadCount(`${http.url}/dtypes_v1.tensors`, 'dtypes_v1.tensors', { source: { http: FAST } });
  t.equal(direct.same, direct.total);
  t.equal(proxy.tunnels.length, before, 'NO_PROXY=127.0.0.1: the proxy saw nothing');
});

t.test('a proxy that refuses: wrong credentials, a denied host, no proxy listening', { skip }, async (t) => {
  const http = await startHttpServer(VECTORS);
  const proxy = await startForwardProxy({ auth: ['tz', 'right'], deny: (x) => x.endsWith(':1') });
  t.teardown(async () => Promise.all([http.close(), proxy.close()]));
  const wrong = proxy.url.replace('right', 'wrong');
  for (const net of ['native', 'js']) {
    proxyEnv(t, { HTTP_PROXY: wrong });
    if (net === 'js') setEnv('TENSORIZE_NET', 'js');
    else setEnv('TENSORIZE_NET', undefined);
    await t.rejects(load(`${http.url}/dtypes_v1.tensors`, { device: 'cpu', source: { http: FAST } }), { code: 'E_IO', message: /407|[Pp]roxy/ }, `${net}: wrong credentials`);
  }
  setEnv('TENSORIZE_NET', undefined);
  // The native fetcher's own tunnel, refused: wrong credentials, then a denied target.
  const size = readFileSync(join(VECTORS, 'dtypes_v1.tensors')).length;
  const job = [{ offset: 0, length: 100, dst: 0, crc32: false, sha256: false }];
  for (const [env, want] of [
    [{ HTTP_PROXY: wrong }, /refused a tunnel to 127\.0\.0\.1:[0-9]+ \(HTTP 407\): proxy authentication required/],
    [{ HTTP_PROXY: proxy.url }, /refused a tunnel to 127\.0\.0\.1:1 \(HTTP 403\)/],
  ] as const) {
    proxyEnv(t, env);
    const url = env.HTTP_PROXY === wrong ? `${http.url}/dtypes_v1.tensors` : 'http://127.0.0.1:1/dtypes_v1.tensors';
    const net = { target: httpTarget(url, {}, {}), retry: { retries: 3, baseDelayMs: 1 } };
    const before = proxy.tunnels.length;
    await t.rejects(fetchNative({ name: url, size }, net, job, { device: -1, total: 256 }), { code: 'E_IO', message: want }, `native: ${want}`);
    t.equal(proxy.tunnels.length - before, 1, 'a refused tunnel is final, not retried');
  }
  proxyEnv(t, { HTTP_PROXY: 'http://127.0.0.1:1' });
  await t.rejects(load(`${http.url}/dtypes_v1.tensors`, { device: 'cpu', source: { http: FAST } }), { code: 'E_IO' }, 'nothing listening where the proxy should be');
  proxyEnv(t, { HTTPS_PROXY: 'https://127.0.0.1:9' });
  await t.rejects(load('https://example.invalid/x.tensors', { device: 'cpu', source: { http: FAST } }), { code: 'E_UNSUPPORTED', message: /https:\/\/ proxies are not supported/ });
});

t.test('every client routes a request the same way: scheme-less proxies, a user without a password, empty variables', { skip }, async (t) => {
  const http = await startHttpServer(VECTORS);
  const https = await startHttpServer(VECTORS, { tls: TLS });
  const plain = await startForwardProxy();
  const tokened = await startForwardProxy({ auth: ['token', ''] });
  t.teardown(async () => Promise.all([http.close(), https.close(), plain.close(), tokened.close()]));
  const hostPort = (u: string) => new URL(u).host;
  for (const net of ['native', 'js']) {
    if (net === 'js') setEnv('TENSORIZE_NET', 'js');
    else setEnv('TENSORIZE_NET', undefined);
    const cases: [string, Record<string, string>, ForwardProxy | undefined][] = [
      ['a proxy given as host:port, as curl takes it', { HTTP_PROXY: hostPort(plain.url) }, plain],
      ['a user and no password (a token)', { HTTP_PROXY: `http://token@${hostPort(tokened.url)}` }, tokened],
      ['an empty http_proxy wins over HTTP_PROXY: direct', { http_proxy: '', HTTP_PROXY: plain.url }, undefined],
      ['an unusable HTTPS_PROXY does not matter to http://', { HTTP_PROXY: plain.url, HTTPS_PROXY: 'socks5://nowhere:1' }, plain],
    ];
    // An empty http_proxy with HTTPS_PROXY set: http:// goes direct, https:// through the proxy, for every client.
    proxyEnv(t, { http_proxy: '', HTTPS_PROXY: plain.url });
    const before = plain.tunnels.length;
    const direct = await loadCount(`${http.url}/dtypes_v1.tensors`, 'dtypes_v1.tensors', { source: { http: FAST } });
    t.equal(direct.same, direct.total);
    t.equal(plain.tunnels.length, before, `${net}: http:// direct when only HTTPS_PROXY applies`);
    const viaTls = await loadCount(`https://localhost:${new URL(https.url).port}/dtypes_v1.tensors`, 'dtypes_v1.tensors', { source: { http: { ...FAST, ca: CA } } });
    t.equal(viaTls.same, viaTls.total);
    t.ok(plain.tunnels.length > before && plain.tunnels.slice(before).every((x) => x === `localhost:${new URL(https.url).port}`), `${net}: https:// through HTTPS_PROXY, every connection`);
    for (const [what, env, via] of cases) {
      proxyEnv(t, env);
      const before = [plain.tunnels.length, tokened.tunnels.length];
      const r = await loadCount(`${http.url}/dtypes_v1.tensors`, 'dtypes_v1.tensors', { source: { http: FAST } });
      t.equal(r.same, r.total, `${net}, ${what}: loaded`);
      const used = [plain.tunnels.length - before[0]!, tokened.tunnels.length - before[1]!];
      t.same(used.map((n) => n > 0), [via === plain, via === tokened], `${net}, ${what}: ${via ? 'through the proxy, every connection' : 'no proxy seen'} (${used})`);
    }
  }
  setEnv('TENSORIZE_NET', undefined);
});

t.test('a server without range support, downloaded through the proxy', { skip }, async (t) => {
  const http = await startHttpServer(VECTORS);
  http.faults.ignoreRange = true;
  const proxy = await startForwardProxy();
  t.teardown(async () => Promise.all([http.close(), proxy.close()]));
  proxyEnv(t, { http_proxy: proxy.url });
  const r = await loadCount(`${http.url}/many_tensors.tensors`, 'many_tensors.tensors', { source: { http: FAST } });
  t.equal(r.same, r.total, 'every tensor');
  t.ok(proxy.tunnels.length >= 2, `the probe and the download were tunnelled (${proxy.tunnels.length})`);
});

t.test('S3 through the proxy: the SDK\'s requests and the presigned reads', { skip }, async (t) => {
  useS3Env(t);
  const s3 = await startS3(t.testdir());
  const proxy = await startForwardProxy({ auth: ['a', 'b'] });
  t.teardown(async () => Promise.all([s3.close(), proxy.close()]));
  const f = 'module_bf16_v2.tensors';
  await makeS3Client({ endpoint: s3.endpoint }).client.send(new PutObjectCommand({ Bucket: 'b', Key: f, Body: readFileSync(join(VECTORS, f)) }));
  proxyEnv(t, { HTTP_PROXY: proxy.url });
  const r = await loadCount(`s3://b/${f}`, f, { verify: true, source: { s3: { endpoint: s3.endpoint, ...FAST } } });
  t.equal(r.engine, 'native');
  t.equal(r.same, r.total, 'every tensor');
  const host = new URL(s3.endpoint).host;
  t.ok(proxy.tunnels.length >= 2 && proxy.tunnels.every((x) => x === host), `SDK and fetcher both tunnelled to ${host} (${proxy.tunnels.length})`);
});

t.test('the CLI takes the proxy from its environment', { skip }, async (t) => {
  const http = await startHttpServer(VECTORS);
  const proxy = await startForwardProxy();
  t.teardown(async () => Promise.all([http.close(), proxy.close()]));
  const r = await runCli(['load', `${http.url}/dtypes_v1.tensors`, '--device', 'cpu', '--verify', '--json'], { HTTP_PROXY: proxy.url });
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { ok: true, verified: true });
  t.ok(proxy.tunnels.length > 0, 'through the proxy');
  const bad = await runCli(['info', `${http.url}/dtypes_v1.tensors`], { HTTP_PROXY: 'socks5://127.0.0.1:1080' });
  t.equal(bad.code, 1);
  t.match(bad.stderr, /socks5:\/\/ proxies are not supported.*use an http:\/\/ proxy URL/);
});
