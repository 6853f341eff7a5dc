#!/usr/bin/env node
// Remote load benchmark (prints figures; not a timed test): `tensorize load http://...`
// against plain parallel downloads of the same file from the same server, at the same
// concurrency and range size, runs interleaved, each in a fresh process.
//
//   node scripts/bench-remote.mjs FILE.tensors [--runs 5] [--concurrency 8] [--device cpu|cuda]
//                                 [--server nginx|node] [--limit-rate 50m] [--sweep 1,2,4,8,16]
//                                 [--methods raw-js,raw-native,load,load-verify,load-js,verify]
//
// Methods (each a child process; GB/s = 10^9 bytes of the file or tensor data per second
// of transfer, measured inside the process):
//   raw-js       a plain parallel download of the whole file: undici, --concurrency ranged
//                GETs of 8 MiB in flight, bytes dropped (the JavaScript client's ceiling);
//   raw-native   the same download by the addon's native fetcher, bytes dropped (a C++
//                client's ceiling: what a loader could reach if writing cost nothing);
//   load         tensorize load URL --device D (native fetcher, into memory);
//   load-verify  the same with --verify (CRC32 + SHA-256 of every tensor on the way);
//   load-js      tensorize load with TENSORIZE_NET=js (undici, the fallback path);
//   verify       tensorize verify URL (hash only).
// The server is a separate process on loopback: nginx (sendfile, the default when
// installed) or node:http. --limit-rate caps each connection (nginx limit_rate), as object
// stores do (S3: 85-90 MB/s per connection); --sweep then shows how throughput scales with
// the number of connections. Ratios are of medians, against the faster raw download.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};

// Child mode: one raw download, printing {gbps} as JSON.
if (args[0] === '--child-raw') {
  const [, kind, url, sizeS, concS] = args;
  const size = Number(sizeS);
  const concurrency = Number(concS);
  const CHUNK = 8 << 20;
  if (kind === 'js') {
    const { Agent, request } = await import('undici');
    const agent = new Agent({ connections: concurrency });
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < size) {
        const a = next;
        next += CHUNK;
        const b = Math.min(size, a + CHUNK) - 1;
        const res = await request(url, { dispatcher: agent, headers: { range: `bytes=${a}-${b}` } });
        if (res.statusCode !== 206) throw new Error(`HTTP ${res.statusCode}`);
        for await (const _ of res.body);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const s = (performance.now() - t0) / 1000;
    await agent.close();
    console.log(JSON.stringify({ gbps: size / s / 1e9 }));
  } else {
    const { native } = await import(join(root, 'dist/native/binding.js'));
    const { httpTarget } = await import(join(root, 'dist/sources/http.js'));
    const bin = native();
    const { handle, done } = bin.fetch({
      ...httpTarget(url, {}, {}),
      name: url,
      size,
      device: null,
      total: 0,
      items: Float64Array.from([0, size, 0]),
      chunkSize: CHUNK,
      maxGap: 1 << 20,
      connections: concurrency,
      retries: 5,
      baseDelayMs: 200,
      timeoutMs: 30000,
    });
    const st = await done;
    bin.free(handle);
    console.log(JSON.stringify({ gbps: st.bytes / st.transferMs / 1e6 }));
  }
  process.exit(0);
}

const file = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!file || !existsSync(file)) {
  process.stderr.write('usage: node scripts/bench-remote.mjs FILE.tensors [--runs 5] [--concurrency 8] [--device cpu] [--server nginx|node] [--limit-rate 50m] [--sweep 1,2,4,8]\n');
  process.exit(2);
}
const runs = Number(opt('runs', '5'));
const device = opt('device', 'cpu');
const nginxBin = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
const serverKind = opt('server', nginxBin ? 'nginx' : 'node');
const limitRate = opt('limit-rate', undefined);
const sweep = (opt('sweep', undefined) ?? opt('concurrency', '8')).split(',').map(Number);
const methods = opt('methods', 'raw-js,raw-native,load,load-verify,load-js,verify').split(',');
const size = statSync(file).size;
const log = (s) => process.stderr.write(`${s}\n`);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function startServer() {
  if (serverKind === 'nginx') {
    if (!nginxBin) throw new Error('nginx is not installed (apt-get install nginx-light)');
    const dir = mkdtempSync(join(tmpdir(), 'tz-nginx-'));
    const port = 18000 + Math.floor(Math.random() * 1000);
    writeFileSync(
      join(dir, 'nginx.conf'),
      `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events {} http { access_log off; sendfile on; keepalive_requests 100000; ${limitRate ? `limit_rate ${limitRate};` : ''}
  server { listen 127.0.0.1:${port}; root ${dirname(file)}; } }`,
    );
    const p = spawn(nginxBin, ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'inherit' });
    await new Promise((r) => setTimeout(r, 500));
    return { url: `http://127.0.0.1:${port}/${basename(file)}`, stop: () => (p.kill(), rmSync(dir, { recursive: true, force: true })), kind: `nginx (sendfile${limitRate ? `, limit_rate ${limitRate} per connection` : ''})` };
  }
  if (limitRate) throw new Error('--limit-rate needs --server nginx');
  const code = `
    const { createServer } = require('node:http'); const { createReadStream } = require('node:fs');
    const path = ${JSON.stringify(file)}, size = ${size};
    const s = createServer((req, res) => {
      const m = /^bytes=(\\d+)-(\\d*)$/.exec(req.headers.range ?? '');
      const a = m ? Number(m[1]) : 0, b = m && m[2] ? Number(m[2]) : size - 1;
      res.writeHead(m ? 206 : 200, { 'content-length': b - a + 1, etag: '"bench"', ...(m ? { 'content-range': 'bytes ' + a + '-' + b + '/' + size } : {}) });
      createReadStream(path, { start: a, end: b, highWaterMark: 1 << 20 }).pipe(res);
    });
    s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));`;
  const p = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((r) => p.stdout.once('data', (d) => r(Number(String(d).trim()))));
  return { url: `http://127.0.0.1:${port}/${basename(file)}`, stop: () => p.kill(), kind: 'node:http' };
}

function runMethod(m, url, concurrency) {
  const tz = (extra, env = {}) => {
    const r = spawnSync(process.execPath, [join(root, 'bin', 'tensorize.js'), ...extra, '--concurrency', String(concurrency), '--json'], { encoding: 'utf8', env: { ...process.env, ...env } });
    if (r.status !== 0) throw new Error(`tensorize ${extra.join(' ')} failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  if (m === 'raw-js' || m === 'raw-native') {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child-raw', m.slice(4), url, String(size), String(concurrency)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${m} failed: ${r.stderr}`);
    return { gbps: JSON.parse(r.stdout).gbps };
  }
  if (m === 'verify') {
    const j = tz(['verify', url]);
    return { gbps: j.gbPerSecond ?? j.dataBytes / j.seconds / 1e9, peakRssMB: Math.round((j.peakRssBytes ?? 0) / 1e6) };
  }
  const j = tz(['load', url, '--device', device, ...(m === 'load-verify' ? ['--verify'] : [])], m === 'load-js' ? { TENSORIZE_NET: 'js' } : {});
  return { gbps: j.gbPerSecond, peakRssMB: Math.round(j.peakRssBytes / 1e6), engine: j.network?.engine };
}

const server = await startServer();
const report = { server: server.kind, bytes: size, device, runs, results: [] };
try {
  runMethod('raw-native', server.url, 8); // warm the page cache and the server
  for (const concurrency of sweep) {
    const got = Object.fromEntries(methods.map((m) => [m, []]));
    for (let i = 0; i < runs; i++) {
      const line = [];
      for (const m of methods) {
        const r = runMethod(m, server.url, concurrency);
        got[m].push(r);
        line.push(`${m} ${r.gbps.toFixed(2)}`);
      }
      log(`concurrency ${concurrency}, run ${i + 1}: ${line.join(', ')}`);
    }
    const med = Object.fromEntries(methods.map((m) => [m, median(got[m].map((r) => r.gbps))]));
    const raw = Math.max(med['raw-js'] ?? 0, med['raw-native'] ?? 0);
    report.results.push({
      concurrency,
      methods: Object.fromEntries(methods.map((m) => [m, { gbps: got[m].map((r) => r.gbps), median: med[m], ofRaw: raw ? med[m] / raw : undefined, peakRssMB: Math.max(0, ...got[m].map((r) => r.peakRssMB ?? 0)) }])),
    });
    log(`\n${server.kind}, ${(size / 1e9).toFixed(2)} GB, concurrency ${concurrency}, 8 MiB ranges, device ${device}:`);
    for (const m of methods) log(`  ${m.padEnd(12)} median ${med[m].toFixed(2)} GB/s${raw ? `  (${((med[m] / raw) * 100).toFixed(0)}% of the faster raw download)` : ''}`);
  }
  console.log(JSON.stringify(report, null, 2));
} finally {
  server.stop();
}
