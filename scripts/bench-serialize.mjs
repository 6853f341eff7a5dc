#!/usr/bin/env node
// Serialize throughput and peak RSS benchmark (prints figures; not a timed test).
//
//   node scripts/bench-serialize.mjs [--size-gib 1] [--runs 5] [--dir DIR] [--rss-sizes 0.25,1,2] [--encrypt]
//
// 1. Model: a synthetic bf16 transformer of --size-gib. When the reference peer is available
//    (TENSORIZER_PATH, default /work/peers/tensorizer, run with TENSORIZER_PYTHON, default
//    /usr/bin/python3), scripts/peers/tensorizer_write_bench.py --serve builds the model in
//    memory, writes the same tensors as model.safetensors, and then times one tensorizer
//    write_state_dict per request: its runs alternate with tensorize's (peer, ours, peer,
//    ours, ...), so both see the same machine state. Otherwise the model comes from
//    tensorize's own generator and no peer figure is printed.
// 2. tensorize serialize runs --runs times on that model.safetensors (the output is deleted
//    and `sync` runs between runs, untimed, as in the peer script; the first run is a warm-up
//    that is reported but not counted, because a VM pays for first-touching fresh page-cache
//    memory; the peer skips one warm-up run too). Median and best GB/s of tensor data. Then
//    the same with TENSORIZE_ENGINE=js (the pure-JavaScript engine, no addon) for comparison.
// 3. Peak RSS for each of --rss-sizes (GiB): it must not grow with the model.
// The ratio tensorize/tensorizer is of the two medians and the two bests, measured in this run.
//
// --encrypt: encrypted writes instead. A random key (64 hex characters) in DIR/bench.key and a
// passphrase in DIR/bench.pass; --runs pairs of `tensorize serialize --encrypt --key-file`
// and tensorizer's write_state_dict with EncryptionParams(key=...) (the peer's "run key"),
// interleaved; then one pair with the passphrase at both tools' default Argon2id parameters
// (MODERATE: 3 passes over 256 MiB; tensorize --passphrase-file, tensorizer
// EncryptionParams.from_string), key derivation inside both timings. No JS-engine or RSS runs.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
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
const encrypt = args.includes('--encrypt');
const peerPath = process.env.TENSORIZER_PATH ?? '/work/peers/tensorizer';
const peerPython = process.env.TENSORIZER_PYTHON ?? '/usr/bin/python3';
mkdirSync(dir, { recursive: true });

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function serialize(input, out, engine = 'native', extra = []) {
  rmSync(out, { force: true });
  const env = { ...process.env, TENSORIZE_ENGINE: engine };
  delete env.TENSORIZE_KEY;
  delete env.TENSORIZE_PASSPHRASE;
  const r = spawnSync(process.execPath, [bin, 'serialize', input, '-o', out, '--json', ...extra], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`serialize failed: ${r.stderr}`);
  // Like the peer script: flush the written data to disk outside the timing, so that every
  // run starts with no dirty pages of the previous one.
  spawnSync('sync');
  return JSON.parse(r.stdout);
}

function makeModel(gib, sub) {
  const d = join(dir, sub);
  mkdirSync(d, { recursive: true });
  const st = join(d, 'model.safetensors');
  if (!existsSync(st)) {
    execFileSync(process.execPath, ['-e', `import(${JSON.stringify(join(root, 'dist', 'index.js'))}).then(m => m.writeSyntheticSafetensors(${JSON.stringify(st)}, ${Math.round(gib * 2 ** 30)}))`]);
  }
  return st;
}

// The peer, when available, is a long-lived process that times one write_state_dict per
// "run" line, so that its runs and ours alternate and share the machine's state.
const peerAvailable =
  existsSync(peerPython) &&
  spawnSync(peerPython, ['-c', 'import tensorizer'], { env: { ...process.env, PYTHONPATH: peerPath } }).status === 0;
const modelDir = join(dir, `model-${sizeGiB}g`);
const keyFile = join(dir, 'bench.key');
const passFile = join(dir, 'bench.pass');
if (encrypt) {
  writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`);
  writeFileSync(passFile, 'tensorize bench: a passphrase of some length\n');
}
let model;
let peer;
if (peerAvailable) {
  process.stderr.write(`tensorizer ${peerPath}: building the model and warming up...\n`);
  const encArgs = encrypt ? ['--key-file', keyFile, '--passphrase-file', passFile] : [];
  const child = spawn(peerPython, [join(root, 'scripts/peers/tensorizer_write_bench.py'), modelDir, '--size-gib', String(sizeGiB), '--serve', '--warmup', '1', ...encArgs], {
    env: { ...process.env, PYTHONPATH: peerPath },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error('the tensorizer peer exited early');
    return JSON.parse(r.value);
  };
  const hello = await next();
  peer = {
    hello,
    async run(mode) {
      child.stdin.write(mode ? `run ${mode}\n` : 'run\n');
      return (await next()).s;
    },
    close() {
      child.stdin.end();
    },
  };
  model = join(modelDir, 'model.safetensors');
} else {
  process.stderr.write('tensorizer not importable: measuring tensorize alone (set TENSORIZER_PATH / TENSORIZER_PYTHON for the side-by-side ratio)\n');
  model = makeModel(sizeGiB, `model-${sizeGiB}g`);
}

const out = join(dir, 'out.tensors');
if (encrypt) {
  await benchEncrypted();
  process.exit(0);
}
const warm = serialize(model, out);
const results = [];
const peerS = [];
for (let i = 0; i < runs; i++) {
  if (peer) peerS.push(await peer.run());
  results.push(serialize(model, out));
  process.stderr.write(`run ${i + 1}: tensorize ${results[i].gbPerSecond.toFixed(2)} GB/s` + (peer ? `, tensorizer ${(peer.hello.bytes / peerS[i] / 1e9).toFixed(2)} GB/s` : '') + '\n');
}
peer?.close();
const jsResults = [];
for (let i = 0; i < runs; i++) jsResults.push(serialize(model, out, 'js'));
rmSync(out, { force: true });
const gb = results.map((r) => r.gbPerSecond);
const jsGb = jsResults.map((r) => r.gbPerSecond);
const peerGb = peerS.map((s) => peer.hello.bytes / s / 1e9);
const hashes = execFileSync(process.execPath, ['-e', `import(${JSON.stringify(join(root, 'dist', 'index.js'))}).then(m => console.log(m.nativeInfo().hashImplementation))`], { encoding: 'utf8' }).trim();
const ours = {
  engine: `native (${hashes})`,
  jsEngine: { runsGbps: jsGb, medianGbps: median(jsGb), bestGbps: Math.max(...jsGb) },
  bytes: warm.dataBytes,
  tensors: warm.tensors,
  warmupGbps: warm.gbPerSecond,
  runsGbps: gb,
  medianGbps: median(gb),
  bestGbps: Math.max(...gb),
  peakRssBytes: Math.max(...results.map((r) => r.peakRssBytes)),
};
const peerReport = peer
  ? { version: peer.hello.tensorizer, runsGbps: peerGb.map((x) => Number(x.toFixed(3))), medianGbps: median(peerGb), bestGbps: Math.max(...peerGb) }
  : null;

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
  tensorizer: peerReport,
  ratio: peerReport
    ? {
        median: ours.medianGbps / peerReport.medianGbps,
        best: ours.bestGbps / peerReport.bestGbps,
        medianOfPairs: median(gb.map((g, i) => g / peerGb[i])),
      }
    : null,
  peakRssBySize: rss,
};
console.log(JSON.stringify(report, null, 2));
process.stderr.write(
  `\ntensorize serialize (${ours.engine}): median ${ours.medianGbps.toFixed(2)} GB/s, best ${ours.bestGbps.toFixed(2)} GB/s, peak RSS ${(ours.peakRssBytes / 1e6).toFixed(0)} MB\n` +
    `tensorize serialize (TENSORIZE_ENGINE=js): median ${ours.jsEngine.medianGbps.toFixed(2)} GB/s, best ${ours.jsEngine.bestGbps.toFixed(2)} GB/s\n` +
    (peerReport
      ? `tensorizer ${peerReport.version} write_state_dict: median ${peerReport.medianGbps.toFixed(2)} GB/s, best ${peerReport.bestGbps.toFixed(2)} GB/s\n` +
        `ratio: median ${report.ratio.median.toFixed(2)}x, best ${report.ratio.best.toFixed(2)}x, median of the ${runs} run-by-run ratios ${report.ratio.medianOfPairs.toFixed(2)}x\n`
      : '') +
    `peak RSS by model size: ${rss.map((r) => `${r.sizeGiB} GiB → ${r.peakRssMB} MB`).join(', ')}\n`,
);

/** --encrypt: key-file pairs, then one passphrase pair (see the header comment). */
async function benchEncrypted() {
  const withKey = ['--encrypt', '--key-file', keyFile];
  const withPass = ['--encrypt', '--passphrase-file', passFile];
  const warm = serialize(model, out, 'native', withKey);
  const ours = [];
  const theirs = [];
  for (let i = 0; i < runs; i++) {
    if (peer) theirs.push(await peer.run('key'));
    ours.push(serialize(model, out, 'native', withKey));
    process.stderr.write(`key run ${i + 1}: tensorize ${ours[i].gbPerSecond.toFixed(2)} GB/s (${ours[i].seconds} s)` + (peer ? `, tensorizer ${(peer.hello.bytes / theirs[i] / 1e9).toFixed(2)} GB/s (${theirs[i]} s)` : '') + '\n');
  }
  const theirsPass = peer ? await peer.run('passphrase') : undefined;
  const oursPass = serialize(model, out, 'native', withPass);
  process.stderr.write(`passphrase run: tensorize ${oursPass.gbPerSecond.toFixed(2)} GB/s (${oursPass.seconds} s)` + (peer ? `, tensorizer ${(peer.hello.bytes / theirsPass / 1e9).toFixed(2)} GB/s (${theirsPass} s)` : '') + '\n');
  peer?.close();
  rmSync(out, { force: true });
  const gb = ours.map((r) => r.gbPerSecond);
  const peerGb = theirs.map((s) => peer.hello.bytes / s / 1e9);
  const report = {
    machine: { cpus: (await import('node:os')).cpus().length, model: (await import('node:os')).cpus()[0]?.model, node: process.version },
    model: { path: model, bytes: statSync(model).size },
    encrypted: true,
    tensorize: {
      bytes: warm.dataBytes,
      tensors: warm.tensors,
      warmupGbps: warm.gbPerSecond,
      key: { runsSeconds: ours.map((r) => r.seconds), runsGbps: gb, medianGbps: median(gb), medianSeconds: median(ours.map((r) => r.seconds)) },
      passphrase: { seconds: oursPass.seconds, gbps: oursPass.gbPerSecond, kdf: oursPass.encryption?.kdf },
      peakRssBytes: Math.max(...ours.map((r) => r.peakRssBytes)),
    },
    tensorizer: peer
      ? {
          version: peer.hello.tensorizer,
          key: { runsSeconds: theirs, runsGbps: peerGb.map((x) => Number(x.toFixed(3))), medianGbps: median(peerGb), medianSeconds: median(theirs) },
          passphrase: { seconds: theirsPass, gbps: peer.hello.bytes / theirsPass / 1e9 },
        }
      : null,
  };
  if (peer) {
    report.ratio = {
      keyMedian: report.tensorize.key.medianGbps / report.tensorizer.key.medianGbps,
      keyMedianOfPairs: median(gb.map((g, i) => g / peerGb[i])),
      passphrase: report.tensorize.passphrase.gbps / report.tensorizer.passphrase.gbps,
    };
  }
  console.log(JSON.stringify(report, null, 2));
  process.stderr.write(
    `\ntensorize serialize --encrypt --key-file: median ${report.tensorize.key.medianGbps.toFixed(2)} GB/s (${report.tensorize.key.medianSeconds} s)\n` +
      `tensorize serialize --encrypt --passphrase-file (Argon2id 3 x 256 MiB): ${oursPass.gbPerSecond.toFixed(2)} GB/s (${oursPass.seconds} s)\n` +
      (peer
        ? `tensorizer ${report.tensorizer.version} write_state_dict, EncryptionParams(key): median ${report.tensorizer.key.medianGbps.toFixed(2)} GB/s (${report.tensorizer.key.medianSeconds} s)\n` +
          `tensorizer from_string (MODERATE): ${report.tensorizer.passphrase.gbps.toFixed(2)} GB/s (${theirsPass} s)\n` +
          `ratio: key median ${report.ratio.keyMedian.toFixed(2)}x (median of pairs ${report.ratio.keyMedianOfPairs.toFixed(2)}x), passphrase ${report.ratio.passphrase.toFixed(2)}x\n`
        : ''),
  );
}
