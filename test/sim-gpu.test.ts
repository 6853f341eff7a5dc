/**
 * The GPU path on the simulated device (TENSORIZE_SIM_GPU, native/src/device_sim.cc): device
 * memory the host cannot touch, streams on threads whose copies read their source late, a
 * bandwidth model and fault injection. Every reference vector goes onto simulated cuda:0 in
 * every mode, from a file and over HTTP through the pinned ring, and is read back byte for
 * byte; a test-only switch that drops the slot-reuse wait shows that these checks catch the
 * race; every injected device failure ends in a clean error with nothing left allocated.
 * The backend is chosen once per process: this file's own process has two simulated
 * devices, and cases that need another configuration run in a child (helpers/sim-load.mjs).
 */
process.env.TENSORIZE_SIM_GPU = '2';

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from '../src/ops/load.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { startHttpServer } from './helpers/servers.js';
import { ROOT, runCli, sha256, VECTORS } from './helpers/util.js';

const why = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';

interface Manifest {
  tensors: { name: string | (string | number)[]; sha256?: string; meta?: boolean; nbytes?: number }[];
}
const VECTOR_FILES = ['dtypes_v1.tensors', 'module_bf16_v2.tensors', 'structured_paths.tensors', 'meta_marker_v4.tensors', 'many_tensors.tensors'];
const manifestOf = (f: string): Manifest => JSON.parse(readFileSync(join(VECTORS, f.replace(/\.tensors$/, '.json')), 'utf8'));
const nameOf = (n: string | (string | number)[]): string => (typeof n === 'string' ? n : JSON.stringify(n));
const expectedOf = (f: string): Record<string, string> => Object.fromEntries(manifestOf(f).tensors.filter((x) => !x.meta).map((x) => [nameOf(x.name), x.sha256!]));

function assertNothingHeld(t: Test, what: string): void {
  const c = native().simCounts();
  t.same({ allocations: c.allocations, registrations: c.registrations, streams: c.streams, events: c.events, deviceBytes: c.deviceBytes }, { allocations: 0, registrations: 0, streams: 0, events: 0, deviceBytes: 0 }, `${what}: nothing left on the simulated device`);
}

async function checkVector(t: Test, source: string, f: string, opts: Parameters<typeof load>[1]): Promise<void> {
  const want = expectedOf(f);
  const model = await load(source, opts);
  try {
    t.equal(model.stats.backend, 'simulated');
    let checked = 0;
    for (const x of model.tensors) {
      if (x.meta) continue;
      if (want[x.name] === undefined) continue;
      t.equal(sha256(model.read(x.name)), want[x.name], `${f} ${JSON.stringify(opts)}: ${x.name}`);
      checked++;
    }
    t.ok(checked > 0 || model.tensors.every((x) => x.meta), `${f}: tensors were checked`);
  } finally {
    model.close();
  }
}

t.test('two simulated devices, said as such', { skip: why }, async (t) => {
  const i = native().info();
  t.equal(i.backend, 'simulated');
  t.equal(i.deviceCount, 2);
  const r = await runCli(['doctor', '--json'], { TENSORIZE_SIM_GPU: '2' });
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { backend: 'simulated', devices: [{ index: 0 }, { index: 1 }] });
  const human = await runCli(['doctor'], { TENSORIZE_SIM_GPU: '1' });
  t.match(human.stdout, /GPU backend\s+simulated/);
  const bad = await runCli(['doctor', '--json'], { TENSORIZE_SIM_GPU: 'lots' });
  t.match(JSON.parse(bad.stdout), { backend: 'none', noDeviceReason: /TENSORIZE_SIM_GPU=lots is not a number/ });
  // A simulator asked for but not made is an error, never a quiet load into host memory.
  const f = join(VECTORS, 'dtypes_v1.tensors');
  const misset = await runCli(['load', f], { TENSORIZE_SIM_GPU: '1', TENSORIZE_SIM_GPU_MEM: 'lots' });
  t.equal(misset.code, 2, 'a bad TENSORIZE_SIM_GPU_MEM is a usage error');
  t.match(misset.stderr, /TENSORIZE_SIM_GPU is set but no simulated device was made: TENSORIZE_SIM_GPU_MEM=lots is not a device size/);
  t.equal((await runCli(['load', f, '--device', 'cpu'], { TENSORIZE_SIM_GPU: '1', TENSORIZE_SIM_GPU_MEM: 'lots' })).code, 0, '--device cpu still loads into host memory');
});

t.test('every reference vector onto simulated cuda:0, in every mode, read back byte for byte', { skip: why }, async (t) => {
  for (const f of VECTOR_FILES) {
    for (const opts of [
      { plaid: true, readers: 4, chunkSize: 4096, verify: true },
      { plaid: true, readers: 1, chunkSize: 1 << 20, verify: false },
      { plaid: false, verify: true },
      { plaid: true, readers: 3, chunkSize: 8192, verify: false },
    ]) {
      await checkVector(t, join(VECTORS, f), f, { device: 'cuda:0', ...opts });
      assertNothingHeld(t, `${f} ${JSON.stringify(opts)}`);
    }
  }
  // --filter: only the matching tensors are loaded.
  const model = await load(join(VECTORS, 'many_tensors.tensors'), { device: 'cuda:0', plaid: true, filter: 'blk.*1.p', verify: true });
  t.ok(model.tensors.length > 0 && model.tensors.every((x) => /^blk\.[0-9]*1\.p$/.test(x.name)));
  const want = expectedOf('many_tensors.tensors');
  for (const x of model.tensors) t.equal(sha256(model.read(x.name)), want[x.name]);
  model.close();
  assertNothingHeld(t, '--filter');
});

t.test('over HTTP through the pinned receive ring onto simulated cuda:0', { skip: why }, async (t) => {
  const http = await startHttpServer(VECTORS);
  t.teardown(() => http.close());
  for (const f of VECTOR_FILES) {
    for (const opts of [
      { verify: true, concurrency: 3, chunkSize: 4096 },
      { verify: false, concurrency: 1, chunkSize: 1 << 20 },
    ]) {
      await checkVector(t, `${http.url}/${f}`, f, { device: 'cuda:0', ...opts });
      assertNothingHeld(t, `http ${f}`);
    }
  }
});

t.test('a load onto cuda:1 lands there and nowhere else', { skip: why }, async (t) => {
  const before = native().simCounts();
  const model = await load(join(VECTORS, 'dtypes_v1.tensors'), { device: 'cuda:1', plaid: true, verify: true });
  t.equal(model.stats.device, 'cuda:1');
  t.match(model.stats.deviceName, /1/);
  const c = native().simCounts();
  t.equal(c.allocations - before.allocations, 1, 'one allocation');
  const want = expectedOf('dtypes_v1.tensors');
  for (const x of model.tensors) t.equal(sha256(model.read(x.name)), want[x.name], x.name);
  model.close();
  assertNothingHeld(t, 'cuda:1');
  await t.rejects(load(join(VECTORS, 'dtypes_v1.tensors'), { device: 'cuda:2' }), { code: 'E_NO_DEVICE', message: /there is no cuda:2 \(2 device\(s\)/ });
});

t.test('the CLI: load --device cuda:0 on the simulator says so', { skip: why }, async (t) => {
  const f = join(VECTORS, 'module_bf16_v2.tensors');
  const r = await runCli(['load', f, '--device', 'cuda:0', '--plaid', '--verify'], { TENSORIZE_SIM_GPU: '1' });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^device\s+cuda:0 \(.*SIMULATED: a CPU stand-in for tests, not a GPU\)$/m);
  const j = await runCli(['load', f, '--plaid', '--json'], { TENSORIZE_SIM_GPU: '1' });
  t.equal(j.code, 0, j.stderr);
  t.match(JSON.parse(j.stdout), { ok: true, device: 'cuda:0', backend: 'simulated', plaid: true });
  t.notMatch(j.stderr, /no usable GPU/, 'a (simulated) GPU is used by default');
  // Every vector through the CLI onto the simulated GPU, checked against its stored hashes,
  // whole and filtered, with and without plaid.
  for (const v of VECTOR_FILES) {
    const want = manifestOf(v).tensors.length;
    for (const args of [['--plaid'], []]) {
      const r = await runCli(['load', join(VECTORS, v), '--device', 'cuda:0', '--verify', '--json', ...args], { TENSORIZE_SIM_GPU: '1' });
      t.equal(r.code, 0, `${v} ${args.join(' ')}: exit 0`, { stderr: r.stderr });
      t.match(JSON.parse(r.stdout), { ok: true, backend: 'simulated', verified: true, tensors: want }, `${v} ${args.join(' ')}: every tensor verified on cuda:0`);
    }
    const first = nameOf(manifestOf(v).tensors[0].name);
    const r = await runCli(['load', join(VECTORS, v), '--device', 'cuda:0', '--plaid', '--verify', '--json', '--filter', first.startsWith('[') ? `/^${first.replace(/[[\]().*+?^$|{}\\]/g, '\\$&')}$/` : first], { TENSORIZE_SIM_GPU: '1' });
    t.equal(r.code, 0, `${v} --filter: exit 0`, { stderr: r.stderr });
    t.match(JSON.parse(r.stdout), { ok: true, tensors: 1, skipped: want - 1 }, `${v} --filter ${first}: one tensor loaded`);
  }
});

/** One load in a child process with its own simulator settings. */
function child(env: Record<string, string>, args: object): Promise<Record<string, any>> {
  const p = spawn(process.execPath, [join(ROOT, 'test/helpers/sim-load.mjs'), JSON.stringify(args)], { env: { ...process.env, TENSORIZE_SIM_GPU: '1', ...env } });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) =>
    p.on('close', (code, signal) => {
      try {
        resolve({ ...JSON.parse(out), exitCode: code, signal, stderr: err });
      } catch {
        reject(new Error(`child exited ${code ?? signal}: ${out}\n${err}`));
      }
    }),
  );
}

t.test('the checks can fail: without the slot-reuse wait the simulator corrupts the load, and the byte checks see it', { skip: why }, async (t) => {
  const f = 'many_tensors.tensors';
  const args = { file: join(VECTORS, f), opts: { device: 'cuda:0', plaid: true, readers: 2, chunkSize: 4096 }, expected: expectedOf(f) };
  let corrupted = 0;
  const seeds = [1, 2, 3, 4, 5];
  for (const seed of seeds) {
    const good = await child({ TENSORIZE_SIM_SEED: String(seed) }, args);
    t.same([good.ok, good.mismatches], [true, []], `seed ${seed}: with the wait, byte-exact`);
    const bad = await child({ TENSORIZE_SIM_SEED: String(seed), TENSORIZE_TEST_SKIP_SLOT_WAIT: '1' }, args);
    t.ok(bad.ok, `seed ${seed}: the load itself does not notice`);
    if (bad.mismatches?.length) corrupted++;
  }
  t.ok(corrupted >= seeds.length - 1, `without the wait, ${corrupted} of ${seeds.length} seeds corrupted the result`);
});

t.test('randomized plans under many simulator seeds: byte-exact every time', { skip: why }, async (t) => {
  // The native test program's GPU rounds (40 random plans, tensors from 0 bytes to several
  // chunks) with the loader and the fetcher, under seeds that change every copy's delay.
  for (const seed of [11, 12, 13, 14]) {
    const r = spawn(join(ROOT, 'native/build/tensorize_native_test'), [], { env: { ...process.env, TENSORIZE_SIM_GPU: '2', TENSORIZE_SIM_SEED: String(seed) } });
    let out = '';
    r.stdout.on('data', (d) => (out += d));
    const code = await new Promise((res) => r.on('close', res));
    t.equal(code, 0, `seed ${seed}: the native test program passes`, { output: out.slice(-1500) });
    t.match(out, /^[0-9]+ passed, 0 failed$/m);
  }
});

t.test('the H2D probe measures the simulated bandwidth', { skip: why }, async (t) => {
  const r = await runCli(['bench', '--size', '16MiB', '--runs', '1', '--methods', 'plaid', '--json'], { TENSORIZE_SIM_GPU: '1', TENSORIZE_SIM_GPU_GBPS: '2' });
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  t.match(doc.device, { gpu: true, description: /^SIMULATED GPU/ });
  const h2d = doc.ceilings.find((c: { id: string }) => c.id === 'h2d');
  t.ok(h2d, 'the pinned H2D ceiling ran');
  // A lower bound cannot be reached by a slow machine; the model caps the rate at 2 GB/s.
  t.ok(h2d.gbPerSecond.median <= 2.2, `H2D ${h2d.gbPerSecond.median} GB/s, at most the modelled 2 GB/s`);
});


// ---- fault injection: TENSORIZE_SIM_FAIL=op@1 in the load, fetch and probe paths ----

const OPS = ['alloc', 'free', 'register', 'stream', 'copy', 'event', 'sync', 'callback', 'read'] as const;
type Op = (typeof OPS)[number];
// What each op's failure comes out as: the stage where it shows (load, read(), close()), its
// code, whether it leaves the device unusable (a sticky error: the next load fails too).
// A failure that poisons the device (sync, callback) shows at whichever device call of the
// two readers comes next: the first to see it names its own operation.
const LOAD_FAULTS: Record<Op, { stage: string; code: RegExp; sticky: boolean; message?: RegExp }> = {
  alloc: { stage: 'load', code: /^E_DEVICE_OOM$/, sticky: false, message: /cuMemAlloc.*CUDA_ERROR_OUT_OF_MEMORY.*injected: alloc@1/ },
  free: { stage: 'close', code: /^E_DEVICE_FREE$/, sticky: true, message: /cuMemFree.*injected: free@1/ },
  register: { stage: 'load', code: /^E_HOST_OOM$/, sticky: false, message: /cuMemHost(Register|Alloc).*injected: register@1/ },
  stream: { stage: 'load', code: /^E_DEVICE_STREAM$/, sticky: false, message: /cuStreamCreate.*injected: stream@1/ },
  copy: { stage: 'load', code: /^E_DEVICE_COPY$/, sticky: true, message: /cuMemcpyHtoDAsync.*CUDA_ERROR_LAUNCH_FAILED.*injected: copy@1/ },
  event: { stage: 'load', code: /^E_DEVICE_EVENT$/, sticky: false, message: /cuEventCreate.*injected: event@1/ },
  sync: { stage: 'load', code: /^E_DEVICE_(SYNC|COPY|EVENT|CALLBACK)$/, sticky: true, message: /Synchronize.*injected: sync@1/ },
  callback: { stage: 'load', code: /^E_DEVICE_(COPY|EVENT|SYNC|CALLBACK)$/, sticky: true, message: /host function.*injected: callback@1/ },
  read: { stage: 'read', code: /^E_DEVICE_READ$/, sticky: false, message: /cuMemcpyDtoH.*injected: read@1/ },
};

const HELD = ['allocations', 'registrations', 'streams', 'events', 'deviceBytes'] as const;
const held = (c: Record<string, number>) => Object.fromEntries(HELD.map((k) => [k, c[k]]));
const NOTHING = Object.fromEntries(HELD.map((k) => [k, 0]));

async function faultCase(t: Test, op: Op, source: string, f: string, opts: object): Promise<void> {
  const want = LOAD_FAULTS[op];
  const r = await child({ TENSORIZE_SIM_FAIL: `${op}@1` }, { file: source, opts: { device: 'cuda:0', ...opts }, expected: expectedOf(f), again: true });
  t.equal(r.exitCode, 0, `${op}: the process ran to its end (no crash, no hang)`, { stderr: r.stderr });
  t.match(r, { ok: false, stage: want.stage, error: { name: 'TensorizeError', code: want.code, message: want.message } }, `${op}@1 fails at ${want.stage} with its code`);
  t.same(held(r.counts), NOTHING, `${op}@1: nothing left on the device afterwards`);
  t.equal(r.counts.poisoned, want.sticky, `${op}@1: ${want.sticky ? 'a sticky error' : 'the device stays usable'}`);
  if (want.sticky) t.match(r.again, { ok: false, error: { message: /unusable after an earlier error/ } }, `${op}@1: the next load is refused, saying why`);
  else t.match(r.again, { ok: true, mismatches: [] }, `${op}@1: the next load works, byte-exact`);
  t.same(held(r.countsAfter), NOTHING, `${op}@1: nothing left after the second load either`);
}

t.test('each injected device failure in a file load: its code, nothing leaked, no hang', { skip: why }, async (t) => {
  const f = 'many_tensors.tensors';
  for (const op of OPS) await faultCase(t, op, join(VECTORS, f), f, { plaid: true, readers: 2, chunkSize: 4096, verify: true });
});

t.test('each injected device failure in an HTTP load through the pinned ring', { skip: why }, async (t) => {
  const http = await startHttpServer(VECTORS);
  t.teardown(() => http.close());
  const f = 'module_bf16_v2.tensors';
  for (const op of OPS) await faultCase(t, op, `${http.url}/${f}`, f, { verify: true, concurrency: 2, chunkSize: 8192 });
});

t.test('each injected device failure in the H2D probe', { skip: why }, async (t) => {
  // The probe uses alloc, register (pinned hostAlloc), stream, copy, sync and free; a fault of
  // another operation leaves it alone.
  const used: Partial<Record<Op, RegExp>> = { alloc: /^E_DEVICE_OOM$/, free: /^E_DEVICE_FREE$/, register: /^E_HOST_OOM$/, stream: /^E_DEVICE_STREAM$/, copy: /^E_DEVICE_COPY$/, sync: /^E_DEVICE_SYNC$/ };
  for (const op of OPS) {
    const r = await child({ TENSORIZE_SIM_FAIL: `${op}@1` }, { probe: { bytes: 4 << 20, iters: 2 }, again: true });
    t.equal(r.exitCode, 0, `${op}: the process ran to its end`, { stderr: r.stderr });
    if (used[op]) t.match(r, { ok: false, stage: 'probe', error: { code: used[op], message: new RegExp(`injected: ${op}@1`) } }, `${op}@1: the probe fails with its code`);
    else t.match(r, { ok: true, bytesPerSecond: Number }, `${op}@1: not used by the probe, which works`);
    t.same(held(r.counts), NOTHING, `${op}@1: the probe gives everything back`);
    t.equal(r.again.ok, !LOAD_FAULTS[op].sticky || !used[op], `${op}@1: a second probe ${!LOAD_FAULTS[op].sticky || !used[op] ? 'works' : 'is refused'}`);
  }
});

t.test('the CLI on an injected failure: exit 1, the code in --json, the hint on stderr', { skip: why }, async (t) => {
  const f = join(VECTORS, 'module_bf16_v2.tensors');
  for (const [op, code] of [['copy', 'E_DEVICE_COPY'], ['free', 'E_DEVICE_FREE'], ['alloc', 'E_DEVICE_OOM']] as const) {
    const env = { TENSORIZE_SIM_GPU: '1', TENSORIZE_SIM_FAIL: `${op}@1` };
    const j = await runCli(['load', f, '--plaid', '--json'], env);
    t.equal(j.code, 1, `${op}: exit 1`);
    t.match(JSON.parse(j.stdout), { ok: false, error: { code } }, `${op}: one JSON document with the code (no report of a load that then failed)`);
    const h = await runCli(['load', f, '--plaid'], env);
    t.equal(h.code, 1);
    t.equal(h.stdout, '', `${op}: no report on stdout`);
    t.match(h.stderr, /tensorize: error: .*injected/);
    if (op !== 'alloc') t.match(h.stderr, /hint: the GPU context of this process is unusable/);
  }
  const b = await runCli(['bench', '--size', '16MiB', '--runs', '1', '--methods', 'plaid', '--json'], { TENSORIZE_SIM_GPU: '1', TENSORIZE_SIM_FAIL: 'copy@1' });
  t.equal(b.code, 1, 'bench: a failing H2D probe fails the run');
  t.match(JSON.parse(b.stdout), { ok: false, error: { code: 'E_DEVICE_COPY', hints: [/unusable/] } });
});
