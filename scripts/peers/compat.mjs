#!/usr/bin/env node
// Randomized compatibility check against the real tensorizer library.
//
// Usage:
//   node scripts/peers/compat.mjs [--models N] [--seed S] [--keep DIR] [--align N]
//
// For each of N (default 12) random models (model i uses seed S+i, so a failing
// model can be replayed alone with `--models 1 --seed <its seed>`):
//   1. write a random safetensors file by hand (random dtypes, shapes, names, bytes);
//   2. `tensorize serialize model.safetensors -o model.tensors --json` (with --align N:
//      `--align N`, and every tensor's data offset is checked to be a multiple of N)
//      (exit 0, stdout is one JSON document);
//   3. write a manifest (name, torch dtype, shape, nbytes, SHA-256 of the bytes);
//   4. check the output with the real tensorizer (scripts/peers/tensorizer_check.py,
//      TensorDeserializer(verify_hash=True), --num-readers 1,3 plus a lazy run);
//   5. `tensorize verify model.tensors` (exit 0) and
//      `tensorize export model.tensors -o back.safetensors`, then compare every
//      tensor of back.safetensors (dtype, shape, bytes) with the original.
// Prints one line per model and `compat: K/N models OK`; exit 1 if any failed,
// 2 if the Python side (tensorizer, torch) cannot be imported or on a usage error.
//
// Environment: TENSORIZER_PYTHON (default: the peers venv of scripts/peers/setup.sh,
// $TENSORIZE_PEER_PYTHON or ~/.cache/tensorize/peers/bin/python, with tensorizer 2.12.1;
// else /usr/bin/python3), TENSORIZER_PATH (prepended to PYTHONPATH; default none with the
// venv, else /work/peers/tensorizer). An older version: TENSORIZER_PATH=<venv>/tensorizer-2.10.1.
//
// Plain Node ESM, no dependencies beyond node built-ins.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const CLI = path.join(ROOT, 'bin', 'tensorize.js');
const CHECKER = path.join(HERE, 'tensorizer_check.py');
// The peers venv of scripts/peers/setup.sh when there is one, else a tensorizer checkout.
const VENV_PYTHON = process.env.TENSORIZE_PEER_PYTHON || path.join(os.homedir(), '.cache', 'tensorize', 'peers', 'bin', 'python');
const PYTHON = process.env.TENSORIZER_PYTHON || (fs.existsSync(VENV_PYTHON) ? VENV_PYTHON : '/usr/bin/python3');
const TZ_PATH = process.env.TENSORIZER_PATH ?? (PYTHON === VENV_PYTHON ? '' : '/work/peers/tensorizer');

// safetensors dtype -> [torch dtype name, element size]
const DTYPES = {
  BOOL: ['bool', 1],
  U8: ['uint8', 1],
  I8: ['int8', 1],
  I16: ['int16', 2],
  I32: ['int32', 4],
  I64: ['int64', 8],
  F16: ['float16', 2],
  BF16: ['bfloat16', 2],
  F32: ['float32', 4],
  F64: ['float64', 8],
  U16: ['uint16', 2],
  U32: ['uint32', 4],
  U64: ['uint64', 8],
  F8_E4M3: ['float8_e4m3fn', 1],
  F8_E5M2: ['float8_e5m2', 1],
};
const BASE_DTYPES = ['BOOL', 'U8', 'I8', 'I16', 'I32', 'I64', 'F16', 'BF16', 'F32', 'F64'];
const EXTRA_DTYPES = ['F8_E4M3', 'F8_E5M2', 'U16', 'U32', 'U64'];
// tensorizer 2.11 cannot read zero-element tensors of opaque dtypes (known upstream bug).
const NO_EMPTY = new Set(['BF16', 'F8_E4M3', 'F8_E5M2']);

// ---------------------------------------------------------------- arguments

function usage(msg) {
  if (msg) process.stderr.write(`compat: ${msg}\n`);
  process.stderr.write('usage: node scripts/peers/compat.mjs [--models N] [--seed S] [--keep DIR] [--align N]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { models: 12, seed: null, keep: null, align: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, null];
    const value = () => {
      if (inline !== null) return inline;
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === '--models') {
      opts.models = Number(value());
      if (!Number.isInteger(opts.models) || opts.models < 1) usage('--models must be a positive integer');
    } else if (flag === '--seed') {
      opts.seed = Number(value());
      if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff) usage('--seed must be an integer in [0, 2^32)');
    } else if (flag === '--align') {
      opts.align = value();
    } else if (flag === '--keep') {
      opts.keep = path.resolve(value());
    } else if (flag === '-h' || flag === '--help') {
      process.stdout.write('usage: node scripts/peers/compat.mjs [--models N] [--seed S] [--keep DIR] [--align N]\n');
      process.exit(0);
    } else {
      usage(`unknown argument ${a}`);
    }
  }
  if (opts.seed === null) opts.seed = (Date.now() ^ (process.pid << 12)) >>> 0;
  return opts;
}

// ---------------------------------------------------------------- random

function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  constructor(seed) {
    this.f = mulberry32(seed);
    // separate fast generator for bulk bytes (xorshift32), seeded from the first
    this.x = (Math.floor(this.f() * 0xffffffff) | 1) >>> 0;
  }
  float() { return this.f(); }
  int(lo, hi) { return lo + Math.floor(this.f() * (hi - lo + 1)); } // inclusive
  chance(p) { return this.f() < p; }
  pick(arr) { return arr[Math.floor(this.f() * arr.length)]; }
  shuffle(arr) {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = Math.floor(this.f() * (i + 1));
      [arr[i], arr[j]] = [arr[j], arr[i]];
    }
    return arr;
  }
  bytes(n) {
    const buf = Buffer.allocUnsafe(n);
    const words = n >>> 2;
    let x = this.x;
    for (let i = 0; i < words; i++) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      buf.writeUInt32LE(x, i * 4);
    }
    for (let i = words * 4; i < n; i++) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      buf[i] = x & 0xff;
    }
    this.x = x;
    return buf;
  }
}

// ---------------------------------------------------------------- model generation

const LAYER_PARTS = [
  'self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight',
  'self_attn.o_proj.weight', 'self_attn.q_proj.bias', 'mlp.up_proj.weight',
  'mlp.down_proj.weight', 'mlp.gate_proj.weight', 'input_layernorm.weight',
  'post_attention_layernorm.weight', 'self_attn.rotary_emb.inv_freq',
  'mlp.experts.7.w1.weight', 'attn.c_attn.weight', 'ln_1.bias',
];
const TOP_NAMES = [
  'model.embed_tokens.weight', 'lm_head.weight', 'model.norm.weight',
  'transformer.wte.weight', 'transformer.wpe.weight', 'transformer.ln_f.bias',
  'step', 'num_batches_tracked', 'logit_scale',
];
const ODD_NAMES = [
  'naïve.ünïcode.名前', 'модель.слои.0.вес', 'emoji.😀.bias', 'with space.weight',
  'two  spaces . and dots', '..leading.dots', 'trailing.dot.', 'a..b...c',
  'ελληνικά.β', 'ﬁ.ligature', 'tab-less but "quoted"', 'back\\slash.weight',
  'x', '0', '12.34', 'é', 'combining.e\u0301', 'ZWJ.👩‍💻.w', 'mixed Ärger ß.λ',
];

function randomName(rng, used) {
  for (let attempt = 0; ; attempt++) {
    let name;
    const r = rng.float();
    if (r < 0.6) {
      const prefix = rng.pick(['model.layers', 'model.decoder.layers', 'transformer.h', 'encoder.block']);
      name = `${prefix}.${rng.int(0, 47)}.${rng.pick(LAYER_PARTS)}`;
    } else if (r < 0.72) {
      name = rng.pick(TOP_NAMES);
    } else if (r < 0.95) {
      name = rng.pick(ODD_NAMES);
      if (rng.chance(0.5)) name = `${name}.${rng.int(0, 99)}`;
    } else {
      // a long name
      const parts = [];
      const n = rng.int(10, 40);
      for (let i = 0; i < n; i++) parts.push(rng.pick(['block', 'sub', 'ü', 'x', String(i), 'proj']));
      name = parts.join('.');
    }
    if (attempt > 20) name = `${name}.${used.size}`;
    if (name !== '__metadata__' && !used.has(name)) {
      used.add(name);
      return name;
    }
  }
}

function randomShape(rng, dtype, maxElems) {
  const ndim = rng.pick([0, 1, 1, 2, 2, 2, 3, 4]);
  const shape = [];
  for (let i = 0; i < ndim; i++) {
    const r = rng.float();
    if (r < 0.2) shape.push(1);
    else if (r < 0.7) shape.push(rng.int(2, 16));
    else shape.push(rng.int(17, 300));
  }
  // shrink until small enough
  let n = shape.reduce((a, b) => a * b, 1);
  while (n > maxElems) {
    let k = 0;
    for (let i = 1; i < shape.length; i++) if (shape[i] > shape[k]) k = i;
    shape[k] = Math.max(1, Math.floor(shape[k] / 2));
    n = shape.reduce((a, b) => a * b, 1);
  }
  // zero-element tensors (not for dtypes tensorizer 2.11 cannot read empty)
  if (ndim > 0 && !NO_EMPTY.has(dtype) && rng.chance(0.06)) {
    shape[rng.int(0, ndim - 1)] = 0;
  }
  return shape;
}

function largeShape(rng, dtype) {
  const size = DTYPES[dtype][1];
  const targetBytes = rng.int(1, 6) * 1024 * 1024 + rng.int(0, 4096) * size;
  const elems = Math.max(1, Math.floor(targetBytes / size));
  if (rng.chance(0.5)) return [elems];
  const cols = rng.pick([1024, 4096, 1000, 777]);
  return [Math.max(1, Math.floor(elems / cols)), cols];
}

function generateModel(seed) {
  const rng = new Rng(seed);
  const useExtra = rng.chance(0.4);
  const pool = useExtra ? [...BASE_DTYPES, ...EXTRA_DTYPES] : BASE_DTYPES;
  const count = rng.chance(0.1) ? rng.int(1, 3) : rng.int(1, 40);
  const used = new Set();
  const tensors = [];
  let largeLeft = rng.chance(0.35) ? 1 : 0;
  for (let i = 0; i < count; i++) {
    const dtype = rng.pick(pool);
    let shape;
    if (largeLeft > 0 && rng.chance(0.3)) {
      shape = largeShape(rng, dtype);
      largeLeft--;
    } else {
      shape = randomShape(rng, dtype, rng.chance(0.8) ? 4096 : 65536);
    }
    const elems = shape.reduce((a, b) => a * b, 1);
    const nbytes = elems * DTYPES[dtype][1];
    let data = rng.bytes(nbytes);
    if (dtype === 'BOOL') for (let k = 0; k < data.length; k++) data[k] &= 1;
    tensors.push({ name: randomName(rng, used), dtype, shape, data });
  }
  const metadata = { format: 'pt' };
  if (rng.chance(0.5)) metadata.generator = `compat.mjs seed=${seed}`;
  if (rng.chance(0.3)) metadata['ünïcode key'] = 'välue ✓';
  // order of the data section: input order, or shuffled relative to the header
  const dataOrder = rng.chance(0.5) ? tensors.map((_, i) => i) : rng.shuffle(tensors.map((_, i) => i));
  const headerOrder = rng.chance(0.5) ? tensors.map((_, i) => i) : rng.shuffle(tensors.map((_, i) => i));
  return { seed, tensors, metadata, dataOrder, headerOrder, useExtra };
}

function writeSafetensors(file, model) {
  const offsets = new Map();
  let pos = 0;
  for (const i of model.dataOrder) {
    const n = model.tensors[i].data.length;
    offsets.set(i, [pos, pos + n]);
    pos += n;
  }
  const header = { __metadata__: model.metadata };
  for (const i of model.headerOrder) {
    const t = model.tensors[i];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: offsets.get(i) };
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, json);
    for (const i of model.dataOrder) fs.writeSync(fd, model.tensors[i].data);
  } finally {
    fs.closeSync(fd);
  }
  return 8 + json.length + pos;
}

// Parse a safetensors file strictly; returns Map name -> {dtype, shape, data}.
function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 8) throw new Error(`${path.basename(file)}: shorter than 8 bytes`);
  const hlen = buf.readBigUInt64LE(0);
  if (hlen > BigInt(buf.length - 8)) throw new Error(`${path.basename(file)}: header length ${hlen} past end of file (${buf.length} bytes)`);
  const hl = Number(hlen);
  let header;
  try {
    header = JSON.parse(buf.subarray(8, 8 + hl).toString('utf8'));
  } catch (e) {
    throw new Error(`${path.basename(file)}: header is not JSON: ${e.message}`);
  }
  const base = 8 + hl;
  const dataLen = buf.length - base;
  const out = new Map();
  const ranges = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: off } = info;
    if (!(dtype in DTYPES)) throw new Error(`${JSON.stringify(name)}: unknown dtype ${dtype}`);
    const [b, e] = off;
    const expect = shape.reduce((a, c) => a * c, 1) * DTYPES[dtype][1];
    if (!(b <= e && e <= dataLen)) throw new Error(`${JSON.stringify(name)}: data_offsets [${b}, ${e}] outside data section (${dataLen} bytes)`);
    if (e - b !== expect) throw new Error(`${JSON.stringify(name)}: data_offsets span ${e - b} bytes, shape ${JSON.stringify(shape)} ${dtype} needs ${expect}`);
    ranges.push([b, e, name]);
    out.set(name, { dtype, shape, data: buf.subarray(base + b, base + e) });
  }
  ranges.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let p = 0;
  for (const [b, e, name] of ranges) {
    if (b !== p) throw new Error(`data offsets do not tile the data section: ${JSON.stringify(name)} starts at ${b}, expected ${p}`);
    p = e;
  }
  if (p !== dataLen) throw new Error(`data offsets do not tile the data section: end ${p}, data section ${dataLen} bytes`);
  return out;
}

// ---------------------------------------------------------------- running things

function pythonEnv() {
  const env = { ...process.env };
  env.PYTHONPATH = env.PYTHONPATH ? `${TZ_PATH}${path.delimiter}${env.PYTHONPATH}` : TZ_PATH;
  return env;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: opts.timeout ?? 600_000,
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  return r;
}

function describe(r, what) {
  if (r.error) return `${what}: ${r.error.message}`;
  const tail = (s) => {
    const t = (s || '').trim();
    if (!t) return '';
    const lines = t.split('\n');
    return lines.length > 15 ? ['…', ...lines.slice(-15)].join('\n') : t;
  };
  const parts = [`${what}: exit ${r.status}${r.signal ? ` (signal ${r.signal})` : ''}`];
  const out = tail(r.stdout);
  const err = tail(r.stderr);
  if (out) parts.push(`stdout:\n${out}`);
  if (err) parts.push(`stderr:\n${err}`);
  return parts.join('\n');
}

function checkPython() {
  const r = run(PYTHON, ['-c', 'import numpy, torch, tensorizer; print(tensorizer.__version__, torch.__version__)'], { env: pythonEnv(), timeout: 120_000 });
  if (r.error || r.status !== 0) {
    process.stderr.write(
      `compat: cannot import tensorizer with ${PYTHON} (TENSORIZER_PATH=${TZ_PATH}).\n` +
      `  Set TENSORIZER_PYTHON to a Python with torch and numpy, and TENSORIZER_PATH to the\n` +
      `  directory holding the tensorizer package.\n` +
      (r.error ? `  ${r.error.message}\n` : `  ${(r.stderr || '').trim().split('\n').slice(-3).join('\n  ')}\n`),
    );
    process.exit(2);
  }
  return r.stdout.trim();
}

const sha256 = (b) => createHash('sha256').update(b).digest('hex');

let ALIGN = null;

function testModel(seed, dir) {
  const model = generateModel(seed);
  const stFile = path.join(dir, 'model.safetensors');
  const tzFile = path.join(dir, 'model.tensors');
  const manifestFile = path.join(dir, 'manifest.json');
  const backFile = path.join(dir, 'back.safetensors');
  const bytes = writeSafetensors(stFile, model);
  const info = { seed, count: model.tensors.length, bytes, dtypes: new Set(model.tensors.map((t) => t.dtype)) };
  const fail = (why) => ({ ...info, ok: false, why });

  // 2. serialize
  let r = run(process.execPath, [CLI, 'serialize', stFile, '-o', tzFile, '--json', ...(ALIGN ? ['--align', ALIGN] : [])]);
  if (r.error || r.status !== 0) return fail(describe(r, 'serialize'));
  try {
    JSON.parse(r.stdout);
  } catch (e) {
    return fail(`serialize --json: stdout is not one JSON document (${e.message}): ${JSON.stringify(r.stdout.slice(0, 500))}`);
  }

  if (ALIGN) {
    r = run(process.execPath, [CLI, 'info', tzFile, '--json']);
    const bad = r.status === 0 ? JSON.parse(r.stdout).tensors.filter((t) => t.dataLength > 0 && t.dataOffset % Number(ALIGN) !== 0) : null;
    if (!bad) return fail(describe(r, 'info'));
    if (bad.length) return fail(`--align ${ALIGN}: ${bad.length} tensor(s) start at unaligned offsets, e.g. ${bad[0].dataOffset}`);
  }

  // 3. manifest
  const manifest = {
    file: 'model.tensors',
    tensors: model.tensors.map((t) => ({
      name: t.name,
      type: 'state_dict',
      dtype: DTYPES[t.dtype][0],
      shape: t.shape,
      nbytes: t.data.length,
      sha256: sha256(t.data),
    })),
  };
  fs.writeFileSync(manifestFile, JSON.stringify(manifest, null, 1));

  // 4. tensorizer
  r = run(PYTHON, [CHECKER, tzFile, manifestFile, '--num-readers', '1,3'], { env: pythonEnv() });
  if (r.error || r.status !== 0) return fail(describe(r, 'tensorizer_check.py'));

  // 5a. verify
  r = run(process.execPath, [CLI, 'verify', tzFile]);
  if (r.error || r.status !== 0) return fail(describe(r, 'verify'));

  // 5b. export and compare
  r = run(process.execPath, [CLI, 'export', tzFile, '-o', backFile]);
  if (r.error || r.status !== 0) return fail(describe(r, 'export'));
  let back;
  try {
    back = readSafetensors(backFile);
  } catch (e) {
    return fail(`export: back.safetensors is malformed: ${e.message}`);
  }
  const problems = [];
  for (const t of model.tensors) {
    const b = back.get(t.name);
    if (!b) { problems.push(`${JSON.stringify(t.name)} missing`); continue; }
    if (b.dtype !== t.dtype) problems.push(`${JSON.stringify(t.name)}: dtype ${b.dtype} != ${t.dtype}`);
    if (JSON.stringify(b.shape) !== JSON.stringify(t.shape)) problems.push(`${JSON.stringify(t.name)}: shape ${JSON.stringify(b.shape)} != ${JSON.stringify(t.shape)}`);
    if (!b.data.equals(t.data)) problems.push(`${JSON.stringify(t.name)} (${t.dtype} ${JSON.stringify(t.shape)}): bytes differ`);
  }
  const names = new Set(model.tensors.map((t) => t.name));
  for (const n of back.keys()) if (!names.has(n)) problems.push(`unexpected tensor ${JSON.stringify(n)}`);
  if (problems.length) {
    const shown = problems.slice(0, 10);
    if (problems.length > 10) shown.push(`… ${problems.length - 10} more`);
    return fail(`export round trip: ${shown.join('; ')}`);
  }
  return { ...info, ok: true };
}

// ---------------------------------------------------------------- main

function main() {
  const opts = parseArgs(process.argv.slice(2));
  ALIGN = opts.align;
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) {
    process.stderr.write(`compat: the CLI is not built; run \`npm run build\` in ${ROOT}\n`);
    process.exit(2);
  }
  const versions = checkPython();
  let root;
  if (opts.keep) {
    fs.mkdirSync(opts.keep, { recursive: true });
    root = opts.keep;
  } else {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tensorize-compat-'));
  }
  process.stdout.write(`compat: ${opts.models} models, seed ${opts.seed}, tensorizer/torch ${versions}, dir ${root}${opts.keep ? '' : ' (temporary)'}\n`);

  let okCount = 0;
  const covered = new Set();
  try {
    for (let i = 0; i < opts.models; i++) {
      const seed = (opts.seed + i) >>> 0;
      const dir = path.join(root, `model-${seed}`);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir, { recursive: true });
      const t0 = Date.now();
      let res;
      try {
        res = testModel(seed, dir);
      } catch (e) {
        res = { seed, count: '?', bytes: '?', dtypes: new Set(), ok: false, why: `compat.mjs error: ${e.stack || e}` };
      }
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      for (const d of res.dtypes) covered.add(d);
      const head = `seed ${seed}: ${res.count} tensors, ${res.bytes} bytes, ${secs}s`;
      if (res.ok) {
        okCount++;
        process.stdout.write(`${head} OK\n`);
        if (!opts.keep) fs.rmSync(dir, { recursive: true, force: true });
      } else {
        process.stdout.write(`${head} FAIL ${res.why.replace(/\n/g, '\n    ')}\n`);
        process.stdout.write(`    (replay: node scripts/peers/compat.mjs --models 1 --seed ${seed} --keep DIR)\n`);
      }
    }
  } finally {
    if (!opts.keep) fs.rmSync(root, { recursive: true, force: true });
  }
  const missing = Object.keys(DTYPES).filter((d) => !covered.has(d));
  process.stdout.write(`dtypes covered: ${[...covered].sort().join(' ')}${missing.length ? ` (not drawn: ${missing.join(' ')})` : ''}\n`);
  process.stdout.write(`compat: ${okCount}/${opts.models} models OK\n`);
  process.exit(okCount === opts.models ? 0 : 1);
}

main();
