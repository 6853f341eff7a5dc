#!/usr/bin/env node
// Remote load benchmark (prints figures; not a timed test): `tensorize load http://...`
// against a plain parallel download of the same file from the same server, at the same
// concurrency and range size, runs interleaved.
//
//   node scripts/bench-remote.mjs FILE.tensors [--runs 5] [--concurrency 8] [--device cpu] [--nginx]
//
// The server is a separate process on loopback: node:http streaming file ranges
// (default), or nginx when --nginx is given and nginx is installed. The raw download
// issues the same 8 MiB range requests (undici, --concurrency in flight) and drops the
// bytes; tensorize load fetches them the same way and copies each piece to its
// destination (host memory, or the GPU with --device cuda). Ratios are of medians.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const file = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!file) {
  process.stderr.write('usage: node scripts/bench-remote.mjs FILE.tensors [--runs 5] [--concurrency 8] [--device cpu] [--nginx]\n');
  process.exit(2);
}
const runs = Number(opt('runs', '5'));
const concurrency = Number(opt('concurrency', '8'));
const device = opt('device', 'cpu');
const CHUNK = 8 << 20;
const size = statSync(file).size;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function startServer() {
  if (args.includes('--nginx')) {
    const dir = mkdtempSync(join(tmpdir(), 'tz-nginx-'));
    const port = 18000 + Math.floor(Math.random() * 1000);
    writeFileSync(
      join(dir, 'nginx.conf'),
      `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events {} http { access_log off; sendfile on; server { listen 127.0.0.1:${port}; root ${dirname(file)}; } }`,
    );
    const p = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'inherit' });
    await new Promise((r) => setTimeout(r, 500));
    return { url: `http://127.0.0.1:${port}/${basename(file)}`, stop: () => p.kill(), kind: 'nginx' };
  }
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

async function rawDownload(url) {
  const agent = new Agent({ connections: concurrency });
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < size) {
      const a = next;
      next += CHUNK;
      const b = Math.min(size, a + CHUNK) - 1;
      const res = await request(url, { dispatcher: agent, headers: { range: `bytes=${a}-${b}` } });
      for await (const _ of res.body);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const s = (performance.now() - t0) / 1000;
  await agent.close();
  return size / s / 1e9;
}

function tensorizeLoad(url, verify) {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'tensorize.js'), 'load', url, '--device', device, '--concurrency', String(concurrency), '--json', ...(verify ? ['--verify'] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tensorize load failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout);
  return { gbps: j.gbPerSecond, peakRssMB: Math.round(j.peakRssBytes / 1e6) };
}

const server = await startServer();
try {
  await rawDownload(server.url); // warm the page cache and the server
  const raw = [];
  const ours = [];
  const oursVerify = [];
  for (let i = 0; i < runs; i++) {
    raw.push(await rawDownload(server.url));
    ours.push(tensorizeLoad(server.url, false));
    oursVerify.push(tensorizeLoad(server.url, true));
    process.stderr.write(`run ${i + 1}: raw ${raw[i].toFixed(2)} GB/s, load ${ours[i].gbps.toFixed(2)}, load --verify ${oursVerify[i].gbps.toFixed(2)}\n`);
  }
  const report = {
    server: server.kind,
    bytes: size,
    concurrency,
    device,
    rawGbps: raw,
    loadGbps: ours.map((x) => x.gbps),
    loadVerifyGbps: oursVerify.map((x) => x.gbps),
    peakRssMB: Math.max(...ours.map((x) => x.peakRssMB), ...oursVerify.map((x) => x.peakRssMB)),
    ratio: { load: median(ours.map((x) => x.gbps)) / median(raw), loadVerify: median(oursVerify.map((x) => x.gbps)) / median(raw) },
  };
  console.log(JSON.stringify(report, null, 2));
  process.stderr.write(
    `\n${server.kind}, ${(size / 1e9).toFixed(2)} GB, concurrency ${concurrency}, 8 MiB ranges, device ${device}:\n` +
      `raw parallel download  median ${median(raw).toFixed(2)} GB/s\n` +
      `tensorize load         median ${median(report.loadGbps).toFixed(2)} GB/s  (${(report.ratio.load * 100).toFixed(0)}% of raw)\n` +
      `tensorize load --verify median ${median(report.loadVerifyGbps).toFixed(2)} GB/s  (${(report.ratio.loadVerify * 100).toFixed(0)}% of raw)\n` +
      `peak RSS ${report.peakRssMB} MB\n`,
  );
} finally {
  server.stop();
}
