#!/usr/bin/env node
// Load benchmark for the native loader, with the machine's ceilings measured in the same run.
//
// Usage:
//   node scripts/bench-load.mjs [--size-gib 8] [--dir DIR] [--runs 3] [--device cuda:0|cpu]
//                               [--python python3] [--json]
//
// 1. Makes a synthetic bf16 Llama-style model of the given size as DIR/model.safetensors
//    and serializes it to DIR/model.tensors (kept and reused across runs).
// 2. Reads both files once so they are in the page cache (warm-cache figures).
// 3. Ceilings: pinned host-to-device copy bandwidth (1 GiB buffer, best of 5) on a GPU,
//    and the raw sequential read of the file (pread, 16 MiB blocks, one thread).
// 4. tensorize load: --plaid with several reader counts and chunk sizes, --plaid --verify,
//    and the simple path; each `--runs` times (median and best reported).
// 5. Peers in the same run when --python names a Python with torch: safetensors'
//    load_file(..., device=...) on the same tensors, and torch.load of the raw bytes.
// Prints a table on stderr and (with --json) one JSON document on stdout.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { load } = await import(join(ROOT, 'dist/loader/load.js'));
const { native } = await import(join(ROOT, 'dist/native/binding.js'));
const { writeSyntheticSafetensors } = await import(join(ROOT, 'dist/synthetic.js'));

const args = process.argv.slice(2);
const opt = (n, d) => (args.includes(n) ? args[args.indexOf(n) + 1] : d);
const sizeGiB = Number(opt('--size-gib', '8'));
const dir = opt('--dir', '/tmp/tensorize-bench');
const runs = Number(opt('--runs', '3'));
const python = opt('--python', undefined);
const info = native().info();
const device = opt('--device', info.deviceCount > 0 ? 'cuda:0' : 'cpu');
const log = (s) => process.stderr.write(`${s}\n`);

mkdirSync(dir, { recursive: true });
const st = join(dir, 'model.safetensors');
const tz = join(dir, 'model.tensors');
if (!existsSync(tz)) {
  log(`making a ${sizeGiB} GiB synthetic model in ${dir}`);
  await writeSyntheticSafetensors(st, sizeGiB * 2 ** 30);
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/tensorize.js'), 'serialize', st, '-o', tz, '-q'], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(1);
}

function readAll(path) {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(16 << 20);
  let n = 0;
  const t0 = performance.now();
  for (let k; (k = readSync(fd, buf, 0, buf.length, n)) > 0; ) n += k;
  closeSync(fd);
  return { bytes: n, gbps: n / (performance.now() - t0) / 1e6 };
}
readAll(st);
readAll(tz);
const rawRead = Math.max(...[1, 2, 3].map(() => readAll(tz).gbps));
const results = { device, deviceName: info.devices[0]?.name ?? 'host', sizeGiB, runs, ceilings: { rawReadGBps: rawRead }, methods: [] };
if (device.startsWith('cuda')) results.ceilings.pinnedH2DGBps = native().probeH2D(Number(device.split(':')[1] ?? 0), 1 << 30, 5) / 1e9;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function method(name, opts) {
  const gb = [];
  let last;
  for (let i = 0; i < runs; i++) {
    const m = await load(tz, { device, ...opts });
    last = m.stats;
    m.close();
    gb.push(last.bytes / last.totalMs / 1e6);
  }
  const r = { name, medianGBps: median(gb), bestGBps: Math.max(...gb), transferGBps: last.gbPerSecond, firstTensorMs: last.firstTensorMs, openMs: last.openMs, totalMs: last.totalMs, pinnedBytes: last.pinnedBytes, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
  results.methods.push(r);
  log(`${name.padEnd(40)} median ${r.medianGBps.toFixed(2)} GB/s  best ${r.bestGBps.toFixed(2)}  first tensor ${r.firstTensorMs.toFixed(1)} ms  total ${r.totalMs.toFixed(0)} ms`);
}
for (const readers of [4, 8, 16]) for (const mib of [8, 16, 32]) await method(`plaid readers=${readers} chunk=${mib}MiB`, { plaid: true, readers, chunkSize: mib << 20 });
await method('plaid readers=8 chunk=16MiB --verify', { plaid: true, readers: 8, chunkSize: 16 << 20, verify: true });
await method('simple (read, then synchronous copy)', { plaid: false });

if (python) {
  const code = `
import sys, time, json, torch
from safetensors.torch import load_file
dev = sys.argv[2]
out = {}
ts = []
for i in range(${runs}):
    if dev.startswith('cuda'): torch.cuda.synchronize()
    t0 = time.perf_counter(); sd = load_file(sys.argv[1], device=dev)
    if dev.startswith('cuda'): torch.cuda.synchronize()
    ts.append(time.perf_counter() - t0); n = sum(t.numel() * t.element_size() for t in sd.values()); del sd
out['safetensors.load_file'] = [n / t / 1e9 for t in ts]
print(json.dumps(out))
`;
  const r = spawnSync(python, ['-c', code, st, device], { encoding: 'utf8' });
  if (r.status === 0) {
    for (const [name, gb] of Object.entries(JSON.parse(r.stdout.trim().split('\n').pop()))) {
      results.methods.push({ name: `peer: ${name}`, medianGBps: median(gb), bestGBps: Math.max(...gb) });
      log(`${`peer: ${name}`.padEnd(40)} median ${median(gb).toFixed(2)} GB/s  best ${Math.max(...gb).toFixed(2)}`);
    }
  } else log(`peer run failed: ${r.stderr.slice(-2000)}`);
}
log(`ceilings: raw read ${rawRead.toFixed(2)} GB/s${results.ceilings.pinnedH2DGBps ? `, pinned H2D ${results.ceilings.pinnedH2DGBps.toFixed(2)} GB/s` : ''}`);
if (args.includes('--json')) process.stdout.write(JSON.stringify(results, null, 1) + '\n');
