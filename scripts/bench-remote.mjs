#!/usr/bin/env node
// Remote load benchmark (prints figures; not a timed test): `tensorize load http://...`
// against plain parallel downloads of the same file from the same server, at the same
// concurrency and range size, interleaved.
//
//   node scripts/bench-remote.mjs FILE.tensors [--runs 5] [--concurrency 8] [--device cpu|cuda]
//                                 [--server nginx|node] [--limit-rate 50m] [--sweep 1,2,4,8,16]
//                                 [--methods raw-js,raw-curl,raw-native,load,load-verify,load-js,verify]
//                                 [--fresh-only]
//
// Methods (GB/s = 10^9 bytes of the file, or of tensor data, per second of transfer):
//   raw-js       a plain parallel download of the whole file to /dev/null: undici,
//                --concurrency ranged GETs of 8 MiB in flight, bytes dropped;
//   raw-curl     the same download by curl (-Z --parallel-max N, one transfer per range,
//                -o /dev/null): the plain parallel download of a common C client (wall time
//                of the curl process, its start-up of a few ms included);
//   raw-native   the same download by the addon's native fetcher, bytes dropped (a C++
//                client: what a loader could reach if putting the bytes anywhere cost nothing);
//   load         tensorize load URL --device D (the native fetcher, into memory);
//   load-verify  the same with --verify (CRC32 + SHA-256 of every tensor on the way);
//   load-js      tensorize load with TENSORIZE_NET=js (undici, the fallback path);
//   verify       tensorize verify URL (hash only).
// Two modes, both reported: every run a fresh process (as a real start is: every page a
// load writes is new to the process, and the kernel must zero it), and all runs in one
// process after a warm-up round (the memory a load writes was used before). The server is
// a separate process on loopback: nginx (sendfile; the default when installed) or
// node:http. --limit-rate caps each connection (nginx limit_rate), as object stores do
// (S3: 85-90 MB/s per connection); --sweep shows how throughput scales with connections.
// Ratios are of medians, against each raw download of the same mode.
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

const CHUNK = 8 << 20;

/** One method, in this process; resolves to {gbps, peakRssMB?, engine?}. */
async function runHere(m, url, size, concurrency, device) {
  if (m === 'raw-js') {
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
    return { gbps: size / s / 1e9 };
  }
  if (m === 'raw-curl') {
    const cfg = join(tmpdir(), `tz-curl-${process.pid}.cfg`);
    const parts = [];
    for (let a = 0; a < size; a += CHUNK) {
      parts.push(`url = "${url}"\nrange = "${a}-${Math.min(size, a + CHUNK) - 1}"\noutput = "/dev/null"\nwrite-out = "%{http_code}\\n"\n`);
    }
    writeFileSync(cfg, parts.join('next\n'));
    const t0 = performance.now();
    const r = spawnSync('curl', ['-s', '-Z', '--parallel-max', String(concurrency), '-K', cfg], { encoding: 'utf8' });
    const s = (performance.now() - t0) / 1000;
    rmSync(cfg, { force: true });
    if (r.status !== 0 || r.stdout.split('\n').filter((x) => x === '206').length !== parts.length) throw new Error(`curl failed: ${r.stderr}`);
    return { gbps: size / s / 1e9 };
  }
  const { HttpSource, load, measureBenchTask, verifyFile } = await import(join(root, 'dist/index.js'));
  if (m === 'raw-native') {
    // The download ceiling of `tensorize bench`: the whole object as 8 MiB ranges,
    // `concurrency` in flight, bytes dropped, timed by the fetcher (transfer time).
    const s = await measureBenchTask({ id: 'download', file: url, device: 'cpu', readers: 1, chunkSize: CHUNK, concurrency });
    return { gbps: s.gbPerSecond };
  }
  if (m === 'verify') {
    const t0 = performance.now();
    const src = await HttpSource.open(url);
    const r = await verifyFile(src, { concurrency });
    await src.close();
    if (!r.ok) throw new Error('verify failed');
    return { gbps: r.dataBytes / (performance.now() - t0) / 1e6 };
  }
  if (m === 'load-js') process.env.TENSORIZE_NET = 'js';
  try {
    const model = await load(url, { device, concurrency, verify: m === 'load-verify' });
    model.close();
    return { gbps: model.stats.gbPerSecond, engine: model.stats.network?.engine };
  } finally {
    delete process.env.TENSORIZE_NET;
  }
}

// Child mode: run the methods in this one process, round-robin, `warmups` untimed rounds
// then `runs` timed ones; print {method: [GB/s, ...]}.
if (args[0] === '--child') {
  const [, url, sizeS, concS, device, warmupsS, runsS, list] = args;
  const ms = list.split(',');
  const out = Object.fromEntries(ms.map((m) => [m, []]));
  for (let i = 0; i < Number(warmupsS) + Number(runsS); i++) {
    for (const m of ms) {
      const r = await runHere(m, url, Number(sizeS), Number(concS), device);
      if (i >= Number(warmupsS)) out[m].push(r.gbps);
    }
  }
  console.log(JSON.stringify(out));
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
const methods = opt('methods', 'raw-js,raw-curl,raw-native,load,load-verify,load-js,verify').split(',');
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

/** Methods in a child process: {method: [GB/s, ...]}. */
function child(url, concurrency, warmups, runs, ms) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', url, String(size), String(concurrency), device, String(warmups), String(runs), ms.join(',')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${ms.join(',')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const server = await startServer();
const report = { server: server.kind, bytes: size, device, runs, results: [] };
try {
  child(server.url, 8, 0, 1, ['raw-native']); // warm the page cache and the server
  for (const concurrency of sweep) {
    const res = {};
    // Fresh processes, as a real start is: every method's memory is new to the process.
    const fresh = Object.fromEntries(methods.map((m) => [m, []]));
    for (let i = 0; i < runs; i++) {
      for (const m of methods) fresh[m].push(child(server.url, concurrency, 0, 1, [m])[m][0]);
      log(`concurrency ${concurrency}, fresh run ${i + 1}: ${methods.map((m) => `${m} ${fresh[m][i].toFixed(2)}`).join(', ')}`);
    }
    res.fresh = fresh;
    // One process, after a warm-up round: the memory the loads write was used before.
    if (!args.includes('--fresh-only')) {
      res.warm = child(server.url, concurrency, 1, runs, methods);
      log(`concurrency ${concurrency}, in one process: ${methods.map((m) => `${m} ${res.warm[m].map((x) => x.toFixed(2)).join(' ')}`).join(', ')}`);
    }
    const entry = { concurrency };
    for (const mode of Object.keys(res)) {
      const med = Object.fromEntries(methods.map((m) => [m, median(res[mode][m])]));
      const raws = methods.filter((m) => m.startsWith('raw-'));
      const of = (m) => Object.fromEntries(raws.map((r) => [r, med[m] / med[r]]));
      entry[mode] = Object.fromEntries(methods.map((m) => [m, { gbps: res[mode][m], median: med[m], of: of(m) }]));
      log(`\n${server.kind}, ${(size / 1e9).toFixed(2)} GB, concurrency ${concurrency}, 8 MiB ranges, device ${device}, ${mode === 'fresh' ? 'each run a fresh process' : 'runs in one process after a warm-up'}:`);
      for (const m of methods) {
        const ratios = m.startsWith('raw-') ? '' : `  (${raws.map((r) => `${((med[m] / med[r]) * 100).toFixed(0)}% of ${r}`).join(', ')})`;
        log(`  ${m.padEnd(12)} median ${med[m].toFixed(2)} GB/s${ratios}`);
      }
    }
    report.results.push(entry);
  }
  console.log(JSON.stringify(report, null, 2));
} finally {
  server.stop();
}
