// One load in a fresh process, for tests that need their own device backend (it is chosen
// once per process from TENSORIZE_SIM_* in the environment): loads `file` with `opts`
// through the built library, compares every tensor with `expected` (name -> SHA-256 of its
// bytes), closes, and prints one JSON line: the outcome (the load's error, or the first
// read() or close() error), the tensors whose bytes differ, what the simulator still holds,
// and the outcome of a second load where asked. With `probe` ({bytes, iters}) it runs the
// pinned host-to-device probe instead of a load.
//   node test/helpers/sim-load.mjs '{"file": "...", "opts": {...}, "expected": {...}, "again": true}'
import { createHash } from 'node:crypto';
import { load } from '../../dist/index.js';
import { native } from '../../dist/native/binding.js';

const args = JSON.parse(process.argv[2]);
const sha = (b) => createHash('sha256').update(b).digest('hex');
const failure = (stage, e) => ({ ok: false, stage, error: { code: e.code, message: e.message, name: e.name } });

async function once() {
  if (args.probe) {
    try {
      return { ok: true, bytesPerSecond: native().probeH2D(0, args.probe.bytes, args.probe.iters) };
    } catch (e) {
      return failure('probe', e);
    }
  }
  let model;
  try {
    model = await load(args.file, args.opts);
  } catch (e) {
    return failure('load', e);
  }
  const mismatches = [];
  let outcome = { ok: true };
  try {
    for (const t of model.tensors) {
      if (t.meta || args.expected?.[t.name] === undefined) continue;
      if (sha(model.read(t.name)) !== args.expected[t.name]) mismatches.push(t.name);
    }
  } catch (e) {
    outcome = failure('read', e);
  }
  try {
    model.close();
  } catch (e) {
    if (outcome.ok) outcome = failure('close', e);
  }
  return { ...outcome, tensors: model.tensors.length, stats: model.stats, mismatches };
}

const first = await once();
const counts = native().simCounts();
const second = args.again ? await once() : undefined;
process.stdout.write(`${JSON.stringify({ ...first, counts, again: second, countsAfter: args.again ? native().simCounts() : undefined })}\n`);
