#!/usr/bin/env node
// Encrypted-load benchmark (prints figures; not a timed test): tensorize and tensorizer
// loading the same tensors, plain and encrypted, into host memory from a warm page cache,
// each run a fresh process, the four kinds of run interleaved round by round.
//
//   node scripts/bench-encrypted.mjs [--size-gib 1] [--runs 5] [--dir DIR] [--readers N] [--device cpu|cuda:0]
//
// 1. Files: scripts/peers/tensorizer_encrypt.py writes one seeded bf16 state dict twice with
//    tensorizer (the peers' Python: TENSORIZE_PEER_PYTHON, else ~/.cache/tensorize/peers/bin/python):
//    plain.tensors and encrypted.tensors (EncryptionParams(key=...), a random key written
//    to DIR/key.hex). Delete DIR to make new ones.
// 2. Each round, in fresh processes: `tensorize load --plaid` of each file (the encrypted one
//    with --key-file), and tensorizer's TensorDeserializer (scripts/peers/tensorizer_load_bench.py,
//    its default number of readers) of each (the encrypted one with DecryptionParams.from_key).
//    Before the rounds, every file is read once so the cache is warm.
// 3. GB/s of tensor data over each tool's whole load: tensorize's totalMs (open, index, key
//    handling, allocation, transfer), tensorizer's constructor to the last tensor. Medians.
//    Ratios: tensorize encrypted / tensorizer encrypted (the issue's target: >= 2), and
//    tensorize encrypted / tensorize plain (>= 0.7).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { cpus, homedir, tmpdir } from 'node:os';
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
const dir = opt('dir', join(tmpdir(), 'tensorize-bench-encrypted'));
const readers = opt('readers', undefined);
const device = opt('device', 'cpu');
const python = process.env.TENSORIZE_PEER_PYTHON ?? join(process.env.TENSORIZE_PEERS_DIR ?? join(homedir(), '.cache', 'tensorize', 'peers'), 'bin', 'python');
mkdirSync(dir, { recursive: true });
const keyFile = join(dir, 'key.hex');
const plain = join(dir, 'plain.tensors');
const enc = join(dir, 'encrypted.tensors');
if (!existsSync(keyFile) || !existsSync(plain) || !existsSync(enc)) {
  writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  console.error(`writing ${sizeGiB} GiB twice with tensorizer into ${dir} ...`);
  execFileSync(python, [join(root, 'scripts/peers/tensorizer_encrypt.py'), dir, '--size-gib', String(sizeGiB), '--key-hex', readFileSync(keyFile, 'utf8').trim()], { stdio: ['ignore', 'ignore', 'inherit'] });
}
const key = readFileSync(keyFile, 'utf8').trim();
for (const f of [plain, enc]) readFileSync(f).length; // warm the page cache

const ours = (file, extra) => {
  const r = spawnSync(process.execPath, [bin, 'load', file, '--plaid', '--device', device, '--json', ...(readers ? ['--readers', readers] : []), ...extra], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`tensorize load ${file}: ${r.stderr}`);
  const d = JSON.parse(r.stdout);
  return { gbps: d.bytes / d.totalMs / 1e6, transfer: d.gbPerSecond };
};
const peer = (file, extra) => {
  const r = spawnSync(python, [join(root, 'scripts/peers/tensorizer_load_bench.py'), file, '--runs', '1', '--num-readers', '0', '--device', device === 'cpu' ? 'cpu' : 'cuda', ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tensorizer ${file}: ${r.stderr}`);
  return { gbps: JSON.parse(r.stdout.trim().split('\n').pop()).gbps[0] };
};
const kinds = {
  'tensorize plain': () => ours(plain, []),
  'tensorize encrypted': () => ours(enc, ['--key-file', keyFile]),
  'tensorizer plain': () => peer(plain, []),
  'tensorizer encrypted': () => peer(enc, ['--key-hex', key]),
};
const got = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]));
for (let r = 0; r < runs; r++) {
  for (const [k, f] of Object.entries(kinds)) got[k].push(f());
  console.error(`round ${r + 1}/${runs}: ${Object.entries(got).map(([k, v]) => `${k} ${v.at(-1).gbps.toFixed(2)}`).join(', ')}`);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const m = Object.fromEntries(Object.entries(got).map(([k, v]) => [k, median(v.map((x) => x.gbps))]));
console.log(`encrypted load benchmark: ${sizeGiB} GiB bf16, ${device}, warm cache, ${runs} rounds of fresh processes, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})`);
for (const [k, v] of Object.entries(got)) {
  const t = v[0].transfer === undefined ? '' : `  (transfer alone: median ${median(v.map((x) => x.transfer)).toFixed(2)} GB/s)`;
  console.log(`  ${k.padEnd(22)} median ${m[k].toFixed(2)} GB/s  runs ${v.map((x) => x.gbps.toFixed(2)).join(' ')}${t}`);
}
console.log(`  tensorize encrypted / tensorizer encrypted: ${(m['tensorize encrypted'] / m['tensorizer encrypted']).toFixed(2)}x (target >= 2)`);
console.log(`  tensorize encrypted / tensorize plain:      ${(m['tensorize encrypted'] / m['tensorize plain']).toFixed(2)} (target >= 0.7)`);
console.log(`  tensorizer encrypted / tensorizer plain:    ${(m['tensorizer encrypted'] / m['tensorizer plain']).toFixed(2)}`);
