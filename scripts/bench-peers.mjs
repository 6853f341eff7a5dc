#!/usr/bin/env node
// `tensorize bench` with the peer loaders in the same run: tensorizer 2.11 (TensorDeserializer)
// on the same .tensors file and safetensors (safetensors.torch.load_file) on the same tensors
// as .safetensors, interleaved with the tensorize methods, evicted or warmed the same way,
// each run in a fresh process, against the same ceilings. The peers run in Python
// (scripts/peers/bench_peers.py); a peer that cannot be imported is skipped with the reason.
//
// Usage (after npm run build / npm install):
//   TENSORIZER_PATH=/path/to/tensorizer node scripts/bench-peers.mjs [source.safetensors|source.tensors]
//       [--size 1GiB] [--dir DIR] [--runs 5] [--cold] [--device cpu|cuda:N]
//       [--python /usr/bin/python3] [--safetensors FILE] [--report out.html|svg] [--json]
//
// Without a source it makes the synthetic model (DIR/model.safetensors -> DIR/model.tensors,
// kept when --dir is given). A .safetensors source is converted to DIR/model.tensors and
// safetensors loads the original; for a .tensors source pass --safetensors FILE (the same
// tensors) to include safetensors. Python: --python, else $TORCH_PYTHON, else python3.
// Prints the table on stdout (progress on stderr); with --json, the bench's JSON document
// (peers included) on stdout instead, and the table on stderr.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { formatBenchText, parseSize, prepareBenchSource, renderHtml, renderSvg, runBench } = await import(join(ROOT, 'dist/index.js'));

const args = process.argv.slice(2);
const flags = new Set(['--cold', '--json']);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const source = args.find((a, i) => !a.startsWith('--') && (i === 0 || !args[i - 1].startsWith('--') || flags.has(args[i - 1])));
const runs = Number(opt('--runs', '5'));
const device = opt('--device', undefined);
const python = opt('--python', process.env.TORCH_PYTHON ?? 'python3');
const report = opt('--report', undefined);
const log = (s) => process.stderr.write(`${s}\n`);
const env = { ...process.env, ...(process.env.TENSORIZER_PATH ? { PYTHONPATH: [process.env.TENSORIZER_PATH, process.env.PYTHONPATH].filter(Boolean).join(':') } : {}) };
const PEER = join(ROOT, 'scripts/peers/bench_peers.py');

function py(argv) {
  return new Promise((resolveP) => {
    const p = spawn(python, [PEER, ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', (e) => resolveP({ code: -1, out, err: String(e) }));
    p.on('close', (code) => resolveP({ code, out, err }));
  });
}

const prepared = await prepareBenchSource(source, { size: opt('--size') ? parseSize(opt('--size')) : undefined, dir: opt('--dir'), log });
try {
  const safetensorsFile = opt('--safetensors', prepared.safetensors ?? (prepared.kind === 'converted' && /\.safetensors$/.test(prepared.input) ? resolve(prepared.input) : undefined));
  const check = await py(['check']);
  const have = check.code === 0 ? JSON.parse(check.out.trim().split('\n').pop()) : { why: { tensorizer: `${python}: ${check.err.trim() || 'cannot run'}` } };
  const extra = [];
  const skipped = [];
  const peer = (id, label, file) => ({
    id,
    label,
    file,
    command: `${python} scripts/peers/bench_peers.py ${id} ${file}`,
    async run(target) {
      const r = await py([id, file, '--device', target]);
      if (r.code !== 0) throw new Error(`${id}: ${r.err.trim().split('\n').slice(-3).join(' / ') || `exit ${r.code}`}`);
      const d = JSON.parse(r.out.trim().split('\n').pop());
      return { seconds: d.seconds, bytes: d.bytes, gbPerSecond: d.gbPerSecond, peakRssBytes: d.peakRssBytes, baseRssBytes: d.baseRssBytes };
    },
  });
  if (have.tensorizer) extra.push(peer('tensorizer', `tensorizer ${have.tensorizer} TensorDeserializer`, prepared.file));
  else skipped.push({ id: 'tensorizer', label: 'tensorizer', reason: `${have.why?.tensorizer ?? 'not installed'} (set TENSORIZER_PATH to a checkout of tensorizer)` });
  if (!have.safetensors) skipped.push({ id: 'safetensors', label: 'safetensors', reason: `${have.why?.safetensors ?? 'not installed'} (pip install safetensors)` });
  else if (!safetensorsFile) skipped.push({ id: 'safetensors', label: 'safetensors', reason: 'no .safetensors file of the same tensors (pass --safetensors FILE)' });
  else extra.push(peer('safetensors', `safetensors ${have.safetensors} load_file`, safetensorsFile));
  for (const s of skipped) log(`skipping ${s.label}: ${s.reason}`);

  const result = await runBench({
    file: prepared.file,
    device,
    runs,
    cold: args.includes('--cold'),
    origin: { kind: prepared.kind, input: prepared.input },
    extraMethods: extra,
    log,
  });
  result.skipped.push(...skipped);
  if (args.includes('--json')) log(`\n${formatBenchText(result)}`);
  else process.stdout.write(`${formatBenchText(result)}\n`);
  if (report) {
    writeFileSync(report, /\.svg$/i.test(report) ? renderSvg(result) : renderHtml(result));
    log(`wrote ${report}`);
  }
  if (args.includes('--json')) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  await prepared.cleanup();
}
