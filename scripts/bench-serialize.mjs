#!/usr/bin/env node
// Serialize throughput and peak RSS benchmark (prints figures; not a timed test).
//
//   node scripts/bench-serialize.mjs [--size-gib 1] [--runs 5] [--dir DIR] [--rss-sizes 0.25,1,2]
//
// 1. Model: a synthetic bf16 transformer of --size-gib. When the reference peer is available
//    (TENSORIZER_PATH, default /work/peers/tensorizer, run with TENSORIZER_PYTHON, default
//    /usr/bin/python3), scripts/peers/tensorizer_write_bench.py builds the model, times
//    tensorizer's own write_state_dict on it and writes the same tensors as model.safetensors;
//    otherwise the model comes from tensorize's own generator and no peer figure is printed.
// 2. tensorize serialize runs --runs times on that model.safetensors (the output is deleted
//    between runs; the first run is a warm-up that is reported but not counted, because a VM
//    pays for first-touching fresh page-cache memory). Median and best GB/s of tensor data.
// 3. Peak RSS for each of --rss-sizes (GiB): it must not grow with the model.
// The ratio tensorize/tensorizer is of the two medians and the two bests, measured in this run.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'tensorize.js');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const sizeGiB = Number(opt('size-gib', '1'));
const runs = Number(opt('runs', '5'));
const dir = opt('dir', join(tmpdir(), 'tensorize-bench-serialize'));
const rssSizes = opt('rss-sizes', '0.25,1,2').split(',').map(Number).filter((x) => x > 0);
const peerPath = process.env.TENSORIZER_PATH ?? '/work/peers/tensorizer';
const peerPython = process.env.TENSORIZER_PYTHON ?? '/usr/bin/python3';
mkdirSync(dir, { recursive: true });

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function serialize(input, out) {
  rmSync(out, { force: true });
  const r = spawnSync(process.execPath, [bin, 'serialize', input, '-o', out, '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`serialize failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function makeModel(gib, sub) {
  const d = join(dir, sub);
  mkdirSync(d, { recursive: true });
  const st = join(d, 'model.safetensors');
  if (!existsSync(st)) {
    execFileSync(process.execPath, ['-e', `import(${JSON.stringify(join(root, 'dist', 'synthetic.js'))}).then(m => m.writeSyntheticSafetensors(${JSON.stringify(st)}, ${Math.round(gib * 2 ** 30)}))`]);
  }
  return st;
}

let peer;
const peerAvailable =
  existsSync(peerPython) &&
  spawnSync(peerPython, ['-c', 'import tensorizer'], { env: { ...process.env, PYTHONPATH: peerPath } }).status === 0;
const modelDir = join(dir, `model-${sizeGiB}g`);
let model;
if (peerAvailable) {
  process.stderr.write(`tensorizer ${peerPath}: timing write_state_dict (${runs} runs)...\n`);
  const out = execFileSync(peerPython, [join(root, 'scripts/peers/tensorizer_write_bench.py'), modelDir, '--size-gib', String(sizeGiB), '--runs', String(runs)], {
    env: { ...process.env, PYTHONPATH: peerPath },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  peer = JSON.parse(out.trim().split('\n').pop());
  rmSync(join(modelDir, 'tensorizer.tensors'), { force: true });
  model = join(modelDir, 'model.safetensors');
} else {
  process.stderr.write('tensorizer not importable: measuring tensorize alone (set TENSORIZER_PATH / TENSORIZER_PYTHON for the side-by-side ratio)\n');
  model = makeModel(sizeGiB, `model-${sizeGiB}g`);
}

const out = join(dir, 'out.tensors');
const warm = serialize(model, out);
const results = [];
for (let i = 0; i < runs; i++) results.push(serialize(model, out));
rmSync(out, { force: true });
const gb = results.map((r) => r.gbPerSecond);
const ours = {
  bytes: warm.dataBytes,
  tensors: warm.tensors,
  warmupGbps: warm.gbPerSecond,
  runsGbps: gb,
  medianGbps: median(gb),
  bestGbps: Math.max(...gb),
  peakRssBytes: Math.max(...results.map((r) => r.peakRssBytes)),
};

const rss = [];
for (const g of rssSizes) {
  const st = Math.abs(g - sizeGiB) < 1e-9 ? model : makeModel(g, `rss-${g}g`);
  const r = serialize(st, out);
  rmSync(out, { force: true });
  rss.push({ sizeGiB: g, dataBytes: r.dataBytes, peakRssMB: Math.round(r.peakRssBytes / 1e6), gbPerSecond: r.gbPerSecond });
}

const report = {
  machine: { cpus: (await import('node:os')).cpus().length, model: (await import('node:os')).cpus()[0]?.model, node: process.version },
  model: { path: model, bytes: statSync(model).size },
  tensorize: ours,
  tensorizer: peer ? { medianGbps: peer.median_gbps, bestGbps: peer.best_gbps, runsS: peer.runs_s } : null,
  ratio: peer ? { median: ours.medianGbps / peer.median_gbps, best: ours.bestGbps / peer.best_gbps } : null,
  peakRssBySize: rss,
};
console.log(JSON.stringify(report, null, 2));
process.stderr.write(
  `\ntensorize serialize: median ${ours.medianGbps.toFixed(2)} GB/s, best ${ours.bestGbps.toFixed(2)} GB/s, peak RSS ${(ours.peakRssBytes / 1e6).toFixed(0)} MB\n` +
    (peer
      ? `tensorizer write_state_dict: median ${peer.median_gbps.toFixed(2)} GB/s, best ${peer.best_gbps.toFixed(2)} GB/s\nratio: median ${report.ratio.median.toFixed(2)}x, best ${report.ratio.best.toFixed(2)}x\n`
      : '') +
    `peak RSS by model size: ${rss.map((r) => `${r.sizeGiB} GiB → ${r.peakRssMB} MB`).join(', ')}\n`,
);
