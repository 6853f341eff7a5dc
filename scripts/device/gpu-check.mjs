#!/usr/bin/env node
// GPU checks of the loader, for the GPU machine (scripts/device/run.sh runs it there; CI has
// no GPU). Runs on the built package (dist/ and the addon), no test framework needed:
//   1. every reference vector loaded onto the device in several modes (--plaid with 4 and 8
//      readers, small and default chunks, with and without --verify; the simple path),
//      each tensor read back and compared with the manifest (name, type, dtype, shape,
//      SHA-256 of its bytes: test/helpers/manifest.mjs, which the tap tests use too); pinned
//      and device bytes as the report promises;
//   2. errors on the device: a corrupted tensor under --verify (E_HASH_MISMATCH naming it),
//      a truncated file, view() of device memory, --mmap with a GPU;
//   3. HTTP: the vectors served on loopback by node:http with ranges, loaded onto the device
//      through the native fetcher (pinned ring) and through TENSORIZE_NET=js, with --verify;
//   4. no device memory left behind: one model loaded and closed 20 times, device memory in
//      use (nvidia-smi) before and after.
// Prints one line per failure and ends with `N passed, N failed`; exit 1 on any failure.
//
//   node scripts/device/gpu-check.mjs [--device cuda:0] [--vectors DIR]
// `--device cpu` runs the same checks into host memory (a dry run of this script anywhere).
import { execFileSync } from 'node:child_process';
import { copyFileSync, createReadStream, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { manifestProblems, readManifest } from '../../test/helpers/manifest.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const { load, nativeInfo, TensorizerFile, FileSource } = await import(join(ROOT, 'dist/index.js'));

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const device = opt('--device', 'cuda:0');
const gpu = device !== 'cpu';
const VECTORS = opt('--vectors', process.env.TENSORIZE_VECTORS ?? join(ROOT, '..', 'shared', 'vectors'));

let passed = 0;
let failed = 0;
const check = (ok, what) => {
  if (ok) passed++;
  else {
    failed++;
    console.log(`FAIL ${what}`);
  }
};
const rejects = async (p, code, what, message) => {
  try {
    const m = await p;
    m?.close?.();
    check(false, `${what}: did not fail`);
  } catch (e) {
    check(code.test(e.code) && (!message || message.test(e.message)), `${what}: ${e.code} ${e.message}`);
  }
};

const info = nativeInfo();
console.log(`addon: ${info.available ? 'loaded' : info.error?.message}; backend ${info.backend ?? '-'}, driver CUDA ${info.cudaDriver ?? '-'}; devices: ${info.devices.map((d) => `${d.name} (${d.pciBusId})`).join(', ') || `none (${info.noDeviceReason})`}`);
if (gpu && info.devices.length === 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}

const vectors = readdirSync(VECTORS).filter((f) => f.endsWith('.tensors') && !f.startsWith('encrypted')).sort();

async function checkModel(file, manifest, how, opts) {
  const model = await load(file, { device, ...opts });
  try {
    // every tensor (names, types, dtypes, shapes, meta tensors, aligned, bytes): one check, one FAIL line per problem
    const problems = manifestProblems(model, manifest, { align: 256 });
    if (problems.length === 0) check(true, `${how}: the manifest`);
    for (const p of problems) check(false, `${how}: ${p}`);
    const s = model.stats;
    if (gpu) {
      check(s.deviceBytes > 0 && s.hostBytes === 0, `${how}: device memory, no host destination (${s.deviceBytes}, ${s.hostBytes})`);
      if (opts.plaid && !file.startsWith('http')) check(s.pinnedBytes === 2 * opts.readers * opts.chunkSize, `${how}: pinned ring 2 x readers x chunk (${s.pinnedBytes})`);
      try {
        model.view(model.tensors[0].name);
        check(false, `${how}: view() of device memory should fail`);
      } catch (e) {
        check(e.code === 'E_USAGE', `${how}: view() of device memory: ${e.code}`);
      }
    }
    return s;
  } finally {
    model.close();
  }
}

// 1. every vector, several modes
const modes = [
  { plaid: true, readers: 4, chunkSize: 4096, verify: true },
  { plaid: true, readers: 8, chunkSize: 16 << 20, verify: false },
  { plaid: true, readers: 2, chunkSize: 1 << 20, verify: true },
  { plaid: false, readers: 1, chunkSize: 1 << 20, verify: true },
  { plaid: false, readers: 1, chunkSize: 1 << 20, verify: false },
];
for (const f of vectors) {
  for (const m of modes) {
    const how = `${f} ${device} ${JSON.stringify(m)}`;
    try {
      await checkModel(join(VECTORS, f), readManifest(VECTORS, f), how, m);
    } catch (e) {
      check(false, `${how}: ${e.code} ${e.message}`);
    }
  }
}
console.log(`vectors: ${passed} passed, ${failed} failed so far`);

// 2. errors on the device
const dir = mkdtempSync(join(tmpdir(), 'tz-gpu-check-'));
try {
  const bad = join(dir, 'bad.tensors');
  copyFileSync(join(VECTORS, 'module_bf16_v2.tensors'), bad);
  const src = await FileSource.open(bad);
  const entries = (await TensorizerFile.open(src)).entries.filter((e) => e.dataLength > 0);
  await src.close();
  const victim = entries[Math.floor(entries.length / 2)];
  const b = readFileSync(bad);
  b[victim.dataOffset + 1] ^= 0x10;
  writeFileSync(bad, b);
  // what load() says (as test/load.test.ts expects): <file>: tensor "<name>" does not match its stored CRC32 and SHA-256
  const named = new RegExp(`: tensor "${victim.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" does not match its stored `);
  await rejects(load(bad, { device, plaid: true, verify: true, readers: 3, chunkSize: 4096 }), /^E_HASH_MISMATCH$/, 'corrupted tensor, --plaid --verify', named);
  await rejects(load(bad, { device, plaid: false, verify: true }), /^E_HASH_MISMATCH$/, 'corrupted tensor, simple --verify', named);
  writeFileSync(bad, b.subarray(0, victim.dataOffset + 3));
  await rejects(load(bad, { device, plaid: true }), /^E_(FORMAT|FILE_CHANGED)$/, 'truncated file');
  if (gpu) await rejects(load(join(VECTORS, vectors[0]), { device, mmap: true }), /^E_USAGE$/, '--mmap with a GPU');
  await rejects(load(join(VECTORS, vectors[0]), { device: 'cuda:999' }), /^E_NO_DEVICE$/, 'a device that does not exist');
} finally {
  rmSync(dir, { recursive: true, force: true });
}

// 3. HTTP, through the native fetcher's pinned ring and through undici
const server = createServer((req, res) => {
  const file = join(VECTORS, decodeURIComponent(new URL(req.url, 'http://x').pathname.slice(1)).replace(/\//g, ''));
  let size;
  try {
    size = statSync(file).size;
  } catch {
    res.writeHead(404).end();
    return;
  }
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  const end = m && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  const headers = { 'Content-Length': String(end - start + 1), 'Accept-Ranges': 'bytes', ETag: '"v1"' };
  if (m) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
  res.writeHead(m ? 206 : 200, headers);
  if (req.method === 'HEAD') res.end();
  else createReadStream(file, { start, end }).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;
try {
  for (const net of ['native', 'js']) {
    if (net === 'js') process.env.TENSORIZE_NET = 'js';
    else delete process.env.TENSORIZE_NET;
    for (const f of vectors) {
      for (const m of [
        { verify: true, chunkSize: 4096, concurrency: 3 },
        { verify: false, chunkSize: 1 << 20, concurrency: 8 },
      ]) {
        const how = `http ${net} ${f} ${device} ${JSON.stringify(m)}`;
        try {
          const s = await checkModel(`${base}/${f}`, readManifest(VECTORS, f), how, m);
          check(s.network?.engine === net, `${how}: engine ${s.network?.engine}`);
        } catch (e) {
          check(false, `${how}: ${e.code} ${e.message}`);
        }
      }
    }
  }
} finally {
  delete process.env.TENSORIZE_NET;
  server.close();
}

// 4. nothing left on the device after close()
if (gpu) {
  const used = () => Number(execFileSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', String(Number(device.split(':')[1] ?? 0))], { encoding: 'utf8' }).trim());
  const big = vectors.map((f) => join(VECTORS, f)).sort((a, b) => statSync(b).size - statSync(a).size)[0];
  const model = await load(big, { device, plaid: true });
  model.close();
  let before;
  try {
    before = used();
  } catch (e) {
    console.log(`nvidia-smi unavailable (${e.message}): skipping the leak check`);
  }
  if (before !== undefined) {
    for (let i = 0; i < 20; i++) (await load(big, { device, plaid: i % 2 === 0, verify: i % 3 === 0 })).close();
    for (let i = 0; i < 5; i++) await rejects(load(big, { device, filter: 'no-such-tensor' }), /^E_USAGE$/, 'empty filter');
    const after = used();
    check(after - before < 64, `device memory in use after 20 loads and closes: ${before} -> ${after} MiB`);
  }
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
