#!/usr/bin/env node
// Before/after check of a change: the same tensorize commands on two built checkouts, each
// run in a fresh process, alternating before/after, medians of whole-process wall times
// (prints a Markdown table; not a timed test). Used for issue #14 (docs/benchmarks.md).
//
//   node scripts/bench-ab.mjs BEFORE_DIR AFTER_DIR [--runs 5] [--dir /tmp/tz-ab]
//
// BEFORE_DIR and AFTER_DIR are checkouts with dist/ and the addon built (e.g. a `git
// worktree` of the old commit, with `npm run build`). Inputs are made once in --dir: a
// 1 GiB synthetic bf16 model and 20,000 f32 tensors of 1 KiB, both as safetensors. Each
// tree serializes its own copy; a just-written file can load slower (dirty pages), so
// compare loads of one file with both trees where it matters.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const runs = Number(opt('--runs', '5'));
const D = resolve(opt('--dir', '/tmp/tz-ab'));
const [A, B] = args.map((a) => resolve(a));
if (!A || !B) {
  process.stderr.write('usage: node scripts/bench-ab.mjs BEFORE_DIR AFTER_DIR [--runs 5] [--dir DIR]\n');
  process.exit(2);
}
mkdirSync(D, { recursive: true });
const root = fileURLToPath(new URL('..', import.meta.url));
const { writeSyntheticSafetensors } = await import(join(root, 'dist/index.js'));
if (!existsSync(join(D, 'model.safetensors'))) await writeSyntheticSafetensors(join(D, 'model.safetensors'), 1 << 30);
if (!existsSync(join(D, 'many.safetensors'))) {
  // 20,000 tensors of 1 KiB (f32 16x16).
  const n = 20000, size = 1024;
  const parts = [];
  for (let i = 0; i < n; i++) parts.push(`"t.${i}":{"dtype":"F32","shape":[16,16],"data_offsets":[${i * size},${(i + 1) * size}]}`);
  let json = `{${parts.join(',')}}`;
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8); head.writeBigUInt64LE(BigInt(json.length));
  const data = Buffer.alloc(n * size); for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 255;
  writeFileSync(join(D, 'many.safetensors'), Buffer.concat([head, Buffer.from(json), data]));
}
const cli = (tree, args) => {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('node', [join(tree, 'bin/tensorize.js'), ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${tree} ${args.join(' ')}: ${r.stderr}`);
  return { ms, out: r.stdout };
};
const cases = [
  ['start-up (--version)', () => ['--version']],
  ['serialize 1 GiB', (t) => (rmSync(join(D, `${t}.tensors`), { force: true }), ['serialize', join(D, 'model.safetensors'), '-o', join(D, `${t}.tensors`), '-q'])],
  ['verify 1 GiB', (t) => ['verify', join(D, `${t}.tensors`), '-q']],
  ['export 1 GiB', (t) => (rmSync(join(D, `${t}.out.safetensors`), { force: true }), ['export', join(D, `${t}.tensors`), '-o', join(D, `${t}.out.safetensors`), '-q'])],
  ['load --plaid cpu 1 GiB', (t) => ['load', join(D, `${t}.tensors`), '--device', 'cpu', '-q']],
  ['load --plaid --verify cpu 1 GiB', (t) => ['load', join(D, `${t}.tensors`), '--device', 'cpu', '--verify', '-q']],
  ['serialize 20k tensors', (t) => (rmSync(join(D, `${t}.many.tensors`), { force: true }), ['serialize', join(D, 'many.safetensors'), '-o', join(D, `${t}.many.tensors`), '-q'])],
  ['load --mmap 20k tensors', (t) => ['load', join(D, `${t}.many.tensors`), '--mmap', '-q']],
  ['info 20k tensors', (t) => ['info', join(D, `${t}.many.tensors`)]],
];
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
console.log(`| operation | before (median ms) | after (median ms) | after/before |`);
console.log(`|---|---:|---:|---:|`);
for (const [name, args] of cases) {
  const ms = { a: [], b: [] };
  cli(A, args('a')); cli(B, args('b')); // warm-up (page cache, first-touch)
  for (let i = 0; i < runs; i++) {
    ms.a.push(cli(A, args('a')).ms);
    ms.b.push(cli(B, args('b')).ms);
  }
  const [ma, mb] = [med(ms.a), med(ms.b)];
  console.log(`| ${name} | ${ma.toFixed(0)} | ${mb.toFixed(0)} | ${(mb / ma).toFixed(3)} |`);
}
