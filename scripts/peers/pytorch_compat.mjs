#!/usr/bin/env node
// PyTorch checkpoints -> tensorize serialize -> the real tensorizer 2.11.1.
//
// Usage:
//   node scripts/peers/pytorch_compat.mjs [--count N] [--seed S] [--keep DIR]
//
// Checks, each with TensorDeserializer(verify_hash=True) through tensorizer_check.py
// (num_readers 1 and 3, plus a lazy run) against the SHA-256 that torch computed:
//   - the reference checkpoints in ../shared/vectors (checkpoint_zip.pt, checkpoint_legacy.pt);
//   - every fixture in fixtures/pytorch (manifest.json);
//   - N (default 8) fresh random checkpoints written by real torch just now
//     (scripts/peers/torch_random_checkpoints.py; zip and legacy alternate).
// Prints one line per file and `pytorch compat: K/N files OK`; exit 1 if any failed.
// Environment: TENSORIZER_PYTHON, TENSORIZER_PATH: as for compat.mjs (default: the peers venv of setup.sh).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const CLI = path.join(ROOT, 'bin', 'tensorize.js');
// The peers venv of scripts/peers/setup.sh when there is one, else a tensorizer checkout.
const VENV_PYTHON = process.env.TENSORIZE_PEER_PYTHON || path.join(os.homedir(), '.cache', 'tensorize', 'peers', 'bin', 'python');
const PYTHON = process.env.TENSORIZER_PYTHON || (fs.existsSync(VENV_PYTHON) ? VENV_PYTHON : '/usr/bin/python3');
const TZ_PATH = process.env.TENSORIZER_PATH ?? (PYTHON === VENV_PYTHON ? '' : '/work/peers/tensorizer');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const count = Number(opt('--count', '8'));
const seed = Number(opt('--seed', '1'));
const work = opt('--keep') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tz-pt-compat-'));
fs.mkdirSync(work, { recursive: true });

const env = { ...process.env, PYTHONPATH: [TZ_PATH, process.env.PYTHONPATH].filter(Boolean).join(':') };
const gen = spawnSync(PYTHON, [path.join(HERE, 'torch_random_checkpoints.py'), path.join(work, 'random'), '--count', String(count), '--seed', String(seed)], { encoding: 'utf8' });
if (gen.status !== 0) {
  console.error(gen.stderr);
  process.exit(2);
}
const cases = [];
const shared = path.resolve(ROOT, '..', 'shared', 'vectors');
if (fs.existsSync(path.join(shared, 'checkpoint.json'))) {
  const ref = JSON.parse(fs.readFileSync(path.join(shared, 'checkpoint.json'), 'utf8'));
  for (const f of ref.files) cases.push([path.join(shared, f), ref.tensors]);
}
const fix = JSON.parse(fs.readFileSync(path.join(ROOT, 'fixtures', 'pytorch', 'manifest.json'), 'utf8')).files;
for (const [f, tensors] of Object.entries(fix)) cases.push([path.join(ROOT, 'fixtures', 'pytorch', f), tensors]);
const rnd = JSON.parse(fs.readFileSync(path.join(work, 'random', 'manifest.json'), 'utf8'));
for (const [f, tensors] of Object.entries(rnd)) cases.push([path.join(work, 'random', f), tensors]);

let ok = 0;
for (const [i, [input, tensors]] of cases.entries()) {
  const out = path.join(work, `case${i}.tensors`);
  const man = path.join(work, `case${i}.json`);
  const s = spawnSync(process.execPath, [CLI, 'serialize', input, '-o', out, '--json'], { encoding: 'utf8' });
  if (s.status !== 0) {
    console.log(`FAIL ${input}: serialize exit ${s.status}: ${s.stderr.trim()}`);
    continue;
  }
  fs.writeFileSync(man, JSON.stringify({ tensors }));
  const c = spawnSync(PYTHON, [path.join(HERE, 'tensorizer_check.py'), out, man, '--num-readers', '1,3'], { encoding: 'utf8', env });
  const last = c.stdout.trim().split('\n').pop();
  if (c.status === 0) ok++;
  console.log(`${c.status === 0 ? 'OK  ' : 'FAIL'} ${path.relative(ROOT, input)}: ${last}${c.status === 0 ? '' : `\n${c.stdout}${c.stderr}`}`);
}
console.log(`pytorch compat: ${ok}/${cases.length} files OK`);
process.exit(ok === cases.length ? 0 : 1);
