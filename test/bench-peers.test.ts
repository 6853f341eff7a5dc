// tensorize bench --peers: the peer loaders as methods of the same rounds. The planning
// (which peer runs on which file, and why one cannot) and the notes against real entries;
// the CLI with a Python that cannot run the harness (every peer listed with the reason,
// the bench still runs); and, with the peers venv of scripts/peers/setup.sh, real runs of
// every CPU peer on the same tensors, from a synthetic model, a .tensors file (its
// .safetensors form written beside it for the run, then removed) and S3 on loopback.
import t from 'tap';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePeerList, peersWantSafetensors, planPeers, PEER_IDS, type PeerEnvironment } from '../src/bench/peers.js';
import { peerNotes } from '../src/bench/run.js';
import { summarize } from '../src/bench/summary.js';
import type { BenchEntry, BenchResult } from '../src/bench/types.js';
import { nativeAvailable } from '../src/native/binding.js';
import { findPeer } from './helpers/peers.js';
import { runCli } from './helpers/util.js';

const noNative = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';

t.test('--peers lists: names, all, duplicates; anything else is a usage error', async (t) => {
  t.same(parsePeerList('tensorizer,runai'), ['tensorizer', 'runai']);
  t.same(parsePeerList('all'), [...PEER_IDS]);
  t.same(parsePeerList(' Runai , runai,safetensors'), ['runai', 'safetensors'], 'case and spaces ignored, duplicates once');
  t.throws(() => parsePeerList('tensorizer,vllm'), /not vllm/);
  t.throws(() => parsePeerList(','), /comma-separated list of tensorizer, safetensors, runai/);
  for (const args of [['--peers', 'nope'], ['--python', '/usr/bin/python3'], ['--safetensors', 'x.safetensors']]) {
    const r = await runCli(['bench', '--size', '8MiB', ...args]);
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, args[0] === '--peers' ? /--peers takes a comma-separated list/ : /applies to the peers: add --peers/);
    t.equal(r.stdout, '', 'nothing on stdout');
  }
  const swapped = await runCli(['bench', '--peers', 'model.tensors']);
  t.equal(swapped.code, 2);
  t.match(swapped.stderr, /"model\.tensors" looks like a source: put it before --peers, or write --peers all/);
  const mixed = await runCli(['bench', 's3://b/m.tensors', '--peers', '--safetensors', 'm.safetensors', '--python', '/nonexistent/python3']);
  t.equal(mixed.code, 2, 'a URL source with a local --safetensors: exit 2, before any request');
  t.match(mixed.stderr, /--safetensors m\.safetensors must be a URL, as the source s3:\/\/b\/m\.tensors is/);
});

const check = (over: Partial<PeerEnvironment['peers']> = {}): PeerEnvironment => ({
  python: '/venv/bin/python',
  pythonVersion: '3.11.2',
  torch: '1.13.1',
  cuda: false,
  peers: {
    tensorizer: { version: '2.12.1', why: null, formats: ['tensors'], remote: ['s3', 'http'] },
    safetensors: { version: '0.8.0', why: null, formats: ['safetensors'], remote: [] },
    runai: { version: '0.17.0', why: null, formats: ['safetensors'], remote: ['s3'] },
    fastsafetensors: { version: '0.5.0', why: null, formats: ['safetensors'], remote: [] },
    instanttensor: { version: null, why: 'needs a CUDA device', formats: ['safetensors'], remote: [] },
    flashpack: { version: null, why: 'not installed', formats: ['safetensors'], remote: [] },
    ...over,
  },
});

t.test('planPeers: each peer on its own format, or skipped with the reason', async (t) => {
  const local = planPeers({ ids: PEER_IDS, env: check(), tensors: '/d/m.tensors', safetensors: '/d/m.safetensors', target: 'cpu', simulated: false });
  t.same(local.methods.map((m) => [m.id, m.file]), [['tensorizer', '/d/m.tensors'], ['safetensors', '/d/m.safetensors'], ['runai', '/d/m.safetensors'], ['fastsafetensors', '/d/m.safetensors']]);
  t.match(local.methods[0]!.label, /^tensorizer 2\.12\.1 TensorDeserializer$/);
  t.match(local.methods[0]!.command, /bench_peers\.py run tensorizer \/d\/m\.tensors --device cpu$/);
  t.same(local.skipped.map((s) => s.id), ['instanttensor', 'flashpack']);
  t.match(local.skipped[0]!.reason, /needs a CUDA device \(install: pip install instanttensor==0\.2\.2/);

  const none = planPeers({ ids: ['tensorizer', 'safetensors'], env: check(), tensors: '/d/m.tensors', noSafetensors: 'because', target: 'cpu', simulated: false });
  t.same(none.methods.map((m) => m.id), ['tensorizer']);
  t.same(none.skipped, [{ id: 'safetensors', label: 'safetensors 0.8.0 load_file', reason: 'because' }]);

  const s3 = planPeers({ ids: PEER_IDS.slice(0, 4), env: check(), tensors: 's3://b/m.tensors', safetensors: 's3://b/m.safetensors', target: 'cpu', simulated: false });
  t.same(s3.methods.map((m) => [m.id, m.file]), [['tensorizer', undefined], ['runai', undefined]], 'remote: no local file to evict or warm');
  t.same(s3.skipped.map((s) => [s.id, s.reason]), [['safetensors', 'it reads local files only, not s3:// sources'], ['fastsafetensors', 'it reads local files only, not s3:// sources']]);
  const http = planPeers({ ids: ['tensorizer', 'runai'], env: check(), tensors: 'https://h/m.tensors', safetensors: 'https://h/m.safetensors', target: 'cpu', simulated: false });
  t.same(http.methods.map((m) => m.id), ['tensorizer']);
  t.match(http.skipped[0]!.reason, /local files and s3, not http\(s\):\/\/ sources/);

  const gpu = planPeers({ ids: ['tensorizer'], env: check(), tensors: '/d/m.tensors', target: 'cuda:0', simulated: false });
  t.match(gpu.skipped[0]!.reason, /torch 1\.13\.1 sees no CUDA device/);
  const sim = planPeers({ ids: ['tensorizer'], env: { ...check(), cuda: true }, tensors: '/d/m.tensors', target: 'cuda:0', simulated: true });
  t.match(sim.skipped[0]!.reason, /simulated GPU/);
  const real = planPeers({ ids: ['tensorizer'], env: { ...check(), cuda: true }, tensors: '/d/m.tensors', target: 'cuda:0', simulated: false });
  t.same(real.methods.map((m) => m.id), ['tensorizer']);

  // A GPU machine where every peer imports: the CUDA-only ones still cannot load into host memory.
  const cudaOk = { version: '1', why: null, formats: ['safetensors'], remote: [] };
  const onGpuBox = { ...check({ instanttensor: cudaOk, flashpack: cudaOk }), cuda: true };
  const host = planPeers({ ids: ['instanttensor', 'flashpack', 'safetensors'], env: onGpuBox, tensors: '/d/m.tensors', safetensors: '/d/m.safetensors', target: 'cpu', simulated: false });
  t.same(host.methods.map((m) => m.id), ['safetensors']);
  t.same(host.skipped.map((s) => [s.id, s.reason]), [
    ['instanttensor', 'it loads onto CUDA devices only, and this bench loads into host memory'],
    ['flashpack', 'it loads onto CUDA devices only, and this bench loads into host memory'],
  ]);
  t.equal(peersWantSafetensors({ ids: ['instanttensor', 'tensorizer'], env: onGpuBox, target: 'cpu', simulated: false }), false, 'no .safetensors form written for peers that cannot run');
  t.equal(peersWantSafetensors({ ids: ['instanttensor'], env: onGpuBox, target: 'cuda:0', simulated: false }), true);
});

const entry = (id: string, role: BenchEntry['role'], label: string, rates: number[], bytes = 1000): BenchEntry => ({
  id,
  role,
  label,
  samples: rates.map((g) => ({ seconds: bytes / g / 1e9, bytes, gbPerSecond: g })),
  gbPerSecond: summarize(rates),
  seconds: summarize(rates.map((g) => bytes / g / 1e9)),
});

t.test('peer notes: the fastest on each side compared, either way round; other byte counts called out', async (t) => {
  const about = { python: '/venv/bin/python', pythonVersion: '3.11.2', torch: '1.13.1' };
  const ours = [entry('plaid', 'method', 'tensorize --plaid', [3, 3.2, 2.9]), entry('simple', 'method', 'tensorize simple', [1, 1, 1])];
  t.same(peerNotes(ours, { tensorBytes: 1000 }, about), [], 'no peers, no notes');
  const ahead = peerNotes([...ours, entry('tensorizer', 'peer', 'tensorizer', [1.5]), entry('runai', 'peer', 'runai', [2])], { tensorBytes: 1000 }, about);
  t.match(ahead[0], /fresh process of \/venv\/bin\/python \(Python 3\.11\.2, torch 1\.13\.1\)/);
  t.equal(ahead[1], 'Fastest tensorize method against the fastest peer (medians): tensorize --plaid, 3.00 GB/s, is 1.50x runai, 2.00 GB/s.');
  const behind = peerNotes([...ours, entry('runai', 'peer', 'runai', [4, 4, 4], 999)], { tensorBytes: 1000 }, about);
  t.match(behind[1], /runai loaded 999 bytes of tensor data, and the file holds 1000/);
  t.equal(behind[2], "The fastest peer is ahead: runai, 4.00 GB/s, is 1.33x tensorize's fastest method, tensorize --plaid, 3.00 GB/s (medians).");
});

t.test('bench --peers with a Python that cannot run the harness: every peer listed with the reason, the bench runs', { skip: noNative }, async (t) => {
  const r = await runCli(['bench', '--size', '8MiB', '--runs', '1', '--device', 'cpu', '--methods', 'plaid', '--peers', '--python', '/nonexistent/python3', '--json']);
  if (!t.equal(r.code, 0, "exit 0")) t.comment(r.stderr);
  const doc = JSON.parse(r.stdout) as BenchResult;
  t.same(doc.methods.map((m) => m.id), ['plaid']);
  t.same(doc.skipped.map((s) => s.id), [...PEER_IDS]);
  for (const s of doc.skipped) t.match(s.reason, /^\/nonexistent\/python3 cannot run the peer harness \(spawn \/nonexistent\/python3 ENOENT\); give --python a Python with torch and the peers, or make one with scripts\/peers\/setup\.sh$/, s.id);
  t.match(r.stderr, /skipping the peer tensorizer TensorDeserializer: \/nonexistent\/python3 cannot run/);
});

t.test('bench --peers: a peer that fails in a run is left out and listed with its error; a --safetensors that is not one is a usage error', { skip: noNative }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tz-bench-fakepeer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A stand-in for Python running the harness: `check` says tensorizer can run; `run` fails.
  const fake = join(dir, 'python');
  const env = { python: fake, torch: '9.9', cuda: false, peers: { tensorizer: { version: '9.9', why: null, formats: ['tensors'], remote: [] }, safetensors: { version: '9.9', why: null, formats: ['safetensors'], remote: [] } } };
  writeFileSync(fake, `#!/bin/sh\nif [ "$2" = check ]; then echo '${JSON.stringify(env)}'; exit 0; fi\necho 'Traceback: boom' >&2; exit 1\n`);
  chmodSync(fake, 0o755);
  const r = await runCli(['bench', '--size', '8MiB', '--runs', '2', '--device', 'cpu', '--methods', 'plaid', '--peers', 'tensorizer', '--python', fake, '--json']);
  if (!t.equal(r.code, 0, 'exit 0')) t.comment(r.stderr);
  const doc = JSON.parse(r.stdout) as BenchResult;
  t.same(doc.methods.map((m) => [m.id, m.samples.length]), [['plaid', 2]], 'tensorize ran every round; the failed peer has no entry');
  t.same(doc.skipped.map((s) => s.id), ['tensorizer']);
  t.match(doc.skipped[0]!.reason, /^failed in run 1, so it was left out: the tensorizer peer ended with exit code 1: Traceback: boom$/);
  t.match(r.stderr, /warning: tensorizer 9\.9 TensorDeserializer failed in run 1/);

  const notSt = join(dir, 'x.safetensors');
  writeFileSync(notSt, Buffer.alloc(64, 1));
  const bad = await runCli(['bench', '--size', '8MiB', '--runs', '1', '--device', 'cpu', '--methods', 'plaid', '--peers', '--python', fake, '--safetensors', notSt]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--safetensors .*x\.safetensors is not a \.safetensors file/);
});

const peer = findPeer();
const noPeers = noNative || (typeof peer === 'string' ? peer : false);
const required = process.env.TENSORIZE_REQUIRE_PEERS === '1';

t.test('bench --peers with the real peers: the same tensors, each peer one run per round', { skip: required ? noNative : noPeers }, async (t) => {
  t.ok(typeof peer !== 'string', typeof peer === 'string' ? peer : 'peers found');
  if (typeof peer === 'string') return;
  const r = await runCli(['bench', '--size', '24MiB', '--runs', '2', '--device', 'cpu', '--methods', 'plaid', '--peers', 'tensorizer,safetensors,runai,fastsafetensors,instanttensor', '--python', peer.python, '--json']);
  if (!t.equal(r.code, 0, "exit 0")) t.comment(r.stderr);
  const doc = JSON.parse(r.stdout) as BenchResult;
  const ids = doc.methods.map((m) => m.id).sort();
  t.same(ids, ['fastsafetensors', 'plaid', 'runai', 'safetensors', 'tensorizer']);
  for (const m of doc.methods) {
    t.equal(m.role, m.id === 'plaid' ? 'method' : 'peer', `${m.id}: its role`);
    t.equal(m.samples.length, 2, `${m.id}: one run per round`);
    for (const s of m.samples) t.equal(s.bytes, doc.source.tensorBytes, `${m.id}: the same bytes as the file holds`);
    t.ok(m.samples.every((s) => s.peakRssBytes! > s.baseRssBytes! && s.gbPerSecond > 0), `${m.id}: rate and peak RSS of its own process`);
  }
  t.ok(doc.methods.find((m) => m.id === 'runai')!.firstTensorMs, 'Run:ai hands tensors out one by one: time to first tensor');
  t.same(doc.skipped.map((s) => s.id), ['instanttensor']);
  t.match(doc.skipped[0]!.reason, /CUDA/);
  t.match(doc.peers, { python: peer.python, torch: /^\d/ });
  t.match(doc.notes.join('\n'), /Fastest tensorize method against the fastest peer|The fastest peer is ahead/);
});

t.test('bench --peers on a .tensors file: its .safetensors form is written beside it for the run, then removed', { skip: required ? noNative : noPeers }, async (t) => {
  if (typeof peer === 'string') return t.fail(peer);
  const dir = mkdtempSync(join(tmpdir(), 'tz-bench-peers-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const made = await runCli(['bench', '--size', '16MiB', '--runs', '1', '--device', 'cpu', '--methods', 'plaid', '--dir', dir, '--quiet']);
  if (!t.equal(made.code, 0, "exit 0")) t.comment(made.stderr);
  rmSync(join(dir, 'model.safetensors'));
  const before = readdirSync(dir).sort();
  const r = await runCli(['bench', join(dir, 'model.tensors'), '--runs', '1', '--device', 'cpu', '--methods', 'plaid', '--peers', 'safetensors,tensorizer', '--python', peer.python, '--json']);
  if (!t.equal(r.code, 0, "exit 0")) t.comment(r.stderr);
  const doc = JSON.parse(r.stdout) as BenchResult;
  t.same(doc.methods.map((m) => m.id).sort(), ['plaid', 'safetensors', 'tensorizer']);
  for (const m of doc.methods) t.equal(m.samples[0]!.bytes, doc.source.tensorBytes, `${m.id}: the same bytes`);
  t.match(r.stderr, new RegExp(`wrote the same tensors as ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/\\.tensorize-bench-\\w+/model\\.safetensors`));
  t.same(readdirSync(dir).sort(), before, 'nothing left beside the file');
});
