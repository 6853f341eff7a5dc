// tensorize bench: real runs on real bytes through the CLI (a small synthetic model, a
// safetensors source with --cold, an HTTP source), the reports' bars checked against the
// JSON, page-cache eviction of a real file on disk, and the usage and input errors.
import t, { type Test } from 'tap';
import { existsSync, readdirSync, readFileSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { evictFromPageCache, pageCacheResidency } from '../src/bench/cache.js';
import { serializeAndVerify } from '../src/bench/prepare.js';
import { ASCENT, DESCENT, escapeXml, formatRate, formatText, renderHtml, renderSvg, spreadOf, STEADY_SPREAD, tableRows } from '../src/bench/report.js';
import { readCeiling, summarize } from '../src/bench/summary.js';
import type { BenchEntry, BenchResult } from '../src/bench/types.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { transformerSpec, writeSyntheticSafetensors } from '../src/ops/synthetic.js';
import { ROOT, runCli, VECTORS, writeSafetensors } from './helpers/util.js';
import { startHttpServer } from './helpers/servers.js';

const why = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';
const info = nativeAvailable() ? native().info() : undefined;
const gpu = !!info && info.deviceCount > 0;

const cli = (...args: string[]) => runCli(args);

const TMPFS = 0x01021994;
const onTmpfs = (p: string) => Number(statfsSync(p).type) === TMPFS || Number(statfsSync(p).type) === 0x858458f6;
const close = (a: number, b: number, rel = 1e-6) => Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-12);

/** Every entry's figures are what its samples say, and fractions are of the ceiling. */
function checkEntries(t: Test, doc: BenchResult, runs: number): void {
  for (const e of [...doc.ceilings, ...doc.methods]) {
    t.equal(e.samples.length, e.id === 'h2d' ? 1 : runs, `${e.id}: one sample per run`);
    for (const s of e.samples) {
      t.ok(s.seconds > 0 && s.gbPerSecond > 0, `${e.id}: positive time and rate`);
      t.ok(close(s.gbPerSecond, s.bytes / s.seconds / 1e9), `${e.id}: GB/s = bytes / seconds / 1e9`);
      if (e.id !== 'h2d') t.ok(s.peakRssBytes! > (s.baseRssBytes ?? 0) && s.baseRssBytes! > 0, `${e.id}: peak RSS of its own process`);
    }
    const g = summarize(e.samples.map((s) => s.gbPerSecond));
    t.same(e.gbPerSecond, g, `${e.id}: median, min, max of the runs`);
    t.ok(e.gbPerSecond.min <= e.gbPerSecond.median && e.gbPerSecond.median <= e.gbPerSecond.max);
    t.ok(close(e.fractionOfCeiling!, e.gbPerSecond.median / doc.ceiling.gbPerSecond), `${e.id}: fraction of the ceiling`);
  }
  // The read ceiling: the parallel read, or the 1-thread read when faster and steady.
  const par = doc.ceilings.find((c) => c.id === 'read-parallel');
  const seq = doc.ceilings.find((c) => c.id === 'read-sequential');
  const read = par && seq ? (seq.gbPerSecond.median > par.gbPerSecond.median && seq.samples.length >= 3 && spreadOf(seq.gbPerSecond) <= STEADY_SPREAD ? seq : par) : doc.ceilings.find((c) => c.id !== 'h2d')!;
  const link = doc.ceilings.find((c) => c.id === 'h2d');
  t.equal(doc.ceiling.gbPerSecond, link ? Math.min(read.gbPerSecond.median, link.gbPerSecond.median) : read.gbPerSecond.median, 'the ceiling is the read ceiling (or the link, if slower)');
  t.type(doc.ceiling.reason, 'string', 'the JSON says why that ceiling');
}

/** The bars and ceiling lines of an SVG, with the numbers they were drawn from. */
function parseChart(svg: string) {
  const root = /<svg [^>]*data-ymax="([0-9.]+)" data-plot-top="([0-9.]+)" data-plot-height="([0-9.]+)"/.exec(svg);
  const [ymax, top, height] = [Number(root![1]), Number(root![2]), Number(root![3])];
  const attr = (tag: string, name: string) => new RegExp(` ${name}="([^"]*)"`).exec(tag)?.[1];
  const bars = [...svg.matchAll(/<rect class="bar"[^>]*>/g)].map((m) => ({
    id: attr(m[0], 'data-id')!,
    median: Number(attr(m[0], 'data-median')),
    y: Number(attr(m[0], 'y')),
    h: Number(attr(m[0], 'height')),
  }));
  const lines = [...svg.matchAll(/<line class="ceiling[^"]*"[^>]*>/g)].map((m) => ({
    id: attr(m[0], 'data-id')!,
    binding: m[0].includes('binding'),
    gbps: Number(attr(m[0], 'data-gbps')),
    y: Number(attr(m[0], 'y1')),
  }));
  const values = [...svg.matchAll(/<text [^>]*class="value" data-id="([^"]+)"[^>]*>([^<]*)</g)].map((m) => ({ id: m[1]!, text: m[2]! }));
  return { ymax, top, height, bars, lines, values };
}

function checkChart(t: Test, svg: string, doc: BenchResult): void {
  const c = parseChart(svg);
  t.same(c.bars.map((b) => b.id), doc.methods.map((m) => m.id), 'one bar per method, in order');
  for (const b of c.bars) {
    const m = doc.methods.find((x) => x.id === b.id)!;
    t.equal(b.median, m.gbPerSecond.median, `${b.id}: the bar is the median`);
    t.ok(Math.abs((b.h / c.height) * c.ymax - m.gbPerSecond.median) <= c.ymax * 0.002, `${b.id}: bar height matches ${m.gbPerSecond.median}`);
    t.ok(Math.abs(b.y + b.h - (c.top + c.height)) < 0.02, `${b.id}: bar stands on the axis`);
    t.equal(c.values.find((v) => v.id === b.id)?.text, `${formatRate(m.gbPerSecond.median)} GB/s`, `${b.id}: value label`);
  }
  t.ok(c.ymax >= Math.max(...doc.methods.map((m) => m.gbPerSecond.max), doc.ceiling.gbPerSecond), 'the axis holds every whisker and the ceiling');
  const binding = c.lines.filter((l) => l.binding);
  t.equal(binding.length, 1, 'one ceiling is marked');
  t.equal(binding[0]!.id, doc.ceiling.id);
  t.equal(binding[0]!.gbps, doc.ceiling.gbPerSecond);
  t.ok(Math.abs(binding[0]!.y - (c.top + c.height - (doc.ceiling.gbPerSecond / c.ymax) * c.height)) < 0.02, 'the ceiling line is at its value');
  t.equal(c.lines.length, doc.ceilings.length, 'a line per ceiling');
}

t.test('bench on a synthetic model: every method and ceiling, sane figures, HTML report matching the JSON', { skip: why }, async (t) => {
  const dir = t.testdir();
  const report = join(dir, 'out', 'report.html');
  const size = 16 * 2 ** 20;
  const r = await cli('bench', '--size', '16MiB', '--runs', '2', '--json', '--report', report);
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as BenchResult;
  t.match(doc, { ok: true, schema: 'tensorize-bench/1', runs: 2, source: { kind: 'synthetic' }, cache: { mode: 'warm', applies: true } });
  const want = transformerSpec(size).tensors.reduce((n, x) => n + 2 * x.shape.reduce((a, d) => a * d, 1), 0);
  t.equal(doc.source.tensorBytes, want, 'tensor bytes are the synthetic model\'s');
  t.equal(doc.source.tensors, transformerSpec(size).tensors.length);
  t.same(doc.methods.map((m) => m.id), gpu ? ['plaid', 'simple', 'naive'] : ['plaid', 'mmap', 'simple', 'naive'], 'every method, in order');
  if (gpu) t.match(doc.skipped, [{ id: 'mmap', reason: /host memory only/ }]);
  t.same(doc.ceilings.map((c) => c.id), gpu ? ['read-parallel', 'read-sequential', 'h2d'] : ['read-parallel', 'read-sequential']);
  for (const m of doc.methods) for (const s of m.samples) t.equal(s.bytes, want, `${m.id}: loaded every tensor byte`);
  for (const c of doc.ceilings.filter((x) => x.id !== 'h2d')) for (const s of c.samples) t.equal(s.bytes, doc.source.fileBytes, `${c.id}: read the whole file`);
  checkEntries(t, doc, 2);
  t.ok(doc.methods.every((m) => m.firstTensorMs && m.firstTensorMs.median > 0 && m.firstTensorMs.median <= m.seconds.max * 1000), 'time to first tensor within the load');
  const naive = doc.methods.find((m) => m.id === 'naive')!;
  if (!gpu) t.ok(naive.peakRssBytes! >= naive.samples[0]!.baseRssBytes! + doc.source.fileBytes + want * 0.9, 'naive holds the whole file and the destination');
  t.ok(doc.cache.minResidentBeforeRun! >= 0.99, 'warm: the file was cached before every run');
  if (gpu) t.match(doc.device, { gpu: true, target: 'cuda:0', description: /^GPU: cuda:0 \(/ });
  else t.match(doc.device, { gpu: false, target: 'cpu', description: /^CPU: no usable GPU \(.+\): benchmarking loads into host memory$/ });

  // stderr: progress, the table, the device and cache lines.
  t.match(r.stderr, /no source given: making a .* synthetic bf16 transformer in (\S+)/);
  t.match(r.stderr, /run 2\/2: read x8 [0-9.]+, read x1 [0-9.]+, plaid [0-9.]+, (mmap [0-9.]+, )?simple [0-9.]+, naive [0-9.]+ GB\/s/);
  for (const e of [...doc.ceilings, ...doc.methods]) t.match(r.stderr, new RegExp(`${e.label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+${formatRate(e.gbPerSecond.median)}\\s`), `table row: ${e.id}`);
  t.match(r.stderr, doc.device.description);
  t.match(r.stderr, /Warm cache: the file was evicted, then read once sequentially before the runs/);
  const tmp = /synthetic bf16 transformer in (\S+)/.exec(r.stderr)![1]!;
  t.notOk(existsSync(tmp), 'the temporary model is removed');

  const html = readFileSync(report, 'utf8');
  t.equal((doc as BenchResult & { report: string }).report, report);
  checkChart(t, html, doc);
  t.notMatch(html, /<script|<link|@import|src=/i, 'self-contained: no scripts, styles or images from elsewhere');
  for (const row of tableRows(doc).rows) t.match(html, `<td>${escapeXml(row[1]!)}</td><td class="num">${row[2]}</td>`, `HTML table row: ${row[1]}`);
});

t.test('bench --cold on a safetensors source: converted, its direct load beside, evicted before every run (or says why not), SVG report', { skip: why }, async (t) => {
  const dir = t.testdir();
  const st = join(dir, 'model.safetensors');
  await writeSyntheticSafetensors(st, 16 * 2 ** 20);
  const svg = join(dir, 'chart.svg');
  const r = await cli('bench', st, '--cold', '--runs', '1', '--dir', join(dir, 'work'), '--methods', 'plaid,naive', '--device', 'cpu', '--json', '--report', svg);
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as BenchResult & { files: { tensors: string } };
  t.match(doc, { source: { kind: 'converted', input: st, file: join(dir, 'work', 'model.tensors') }, cache: { mode: 'cold', applies: true }, device: { target: 'cpu', description: /--device cpu/ } });
  t.ok(existsSync(doc.files.tensors), '--dir keeps the converted file');
  t.match(r.stderr, /is not a \.tensors file: converting it first/);
  t.same(doc.methods.map((m) => m.id).sort(), ['naive', 'plaid', 'plaid-safetensors'], 'the methods asked for, and --plaid on the .safetensors as is');
  t.match(doc.methods.find((m) => m.id === 'plaid-safetensors'), { role: 'method', label: /the \.safetensors as is/, command: `tensorize load ${st} --plaid --device cpu` });
  t.match(doc.notes.join('\n'), /Conversion: tensorize --plaid, the \.safetensors as is \(no conversion\) runs at \d+% of the same method on the converted \.tensors file/);
  checkEntries(t, doc, 1);
  const residents = [...doc.ceilings, ...doc.methods].flatMap((e) => e.samples.map((s) => s.residentBefore!));
  t.equal(doc.cache.maxResidentAfterEviction, Math.max(...residents), 'the worst residency after an eviction is reported');
  if (onTmpfs(dir)) {
    t.equal(doc.cache.evicted, false, 'tmpfs pages cannot be evicted');
    t.match(doc.cache.message, /^eviction did not work: 100% still cached \(the file is on tmpfs/);
    t.match(r.stderr, /warning: eviction did not work/);
  } else {
    t.equal(doc.cache.evicted, true, 'evicted on a disk file system');
    t.ok(residents.every((x) => x <= 0.02), 'at most 2% of the pages cached before each run');
    t.match(doc.cache.message, /^Cold cache: the file was evicted from the page cache before every run/);
    t.match(r.stderr, /Cold cache: the file was evicted/);
  }
  checkChart(t, readFileSync(svg, 'utf8'), doc);
});

t.test('bench over HTTP: a raw parallel download is the ceiling, --cold is refused with a reason', { skip: why }, async (t) => {
  const dir = t.testdir();
  const st = join(dir, 'm.safetensors');
  await writeSyntheticSafetensors(st, 8 * 2 ** 20);
  await serializeAndVerify(st, join(dir, 'm.tensors'), () => {});
  const server = await startHttpServer(dir);
  t.teardown(() => server.close());
  // --mmap asked for by name cannot run on a URL: a usage error before any request.
  for (const methods of ['mmap', 'plaid,mmap']) {
    const u = await cli('bench', `${server.url}/m.tensors`, '--methods', methods, '--runs', '1');
    t.equal(u.code, 2, `--methods ${methods}: exit 2`);
    t.match(u.stderr, /tensorize: error: --methods mmap: --mmap cannot run here: it maps local files only\. Methods that apply to an http\(s\):\/\/ or s3:\/\/ source: plaid, simple, naive/);
    t.match(u.stderr, /hint: drop mmap from --methods/);
    t.equal(u.stdout, '');
  }
  t.same(server.requests, [], 'no request was made');
  // Not asked for by name: skipped, with the reason.
  const r = await cli('bench', `${server.url}/m.tensors`, '--cold', '--runs', '1', '--device', 'cpu', '--concurrency', '4', '--json');
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as BenchResult;
  t.match(doc, { source: { kind: 'http', file: `${server.url}/m.tensors` }, cache: { mode: 'cold', applies: false, message: /^--cold does not apply to http/ }, settings: { concurrency: 4 } });
  t.match(r.stderr, /warning: --cold does not apply to http\(s\):\/\/ and s3:\/\/ sources/);
  t.same(doc.ceilings.map((c) => c.id), ['download']);
  t.equal(doc.ceiling.id, 'download');
  t.same(doc.methods.map((m) => m.id), ['plaid', 'simple', 'naive']);
  t.same(doc.skipped, [{ id: 'mmap', label: 'tensorize --mmap (file pages mapped copy-on-write, no copy)', reason: 'it maps local files only' }]);
  t.match(r.stderr, /skipping --mmap: it maps local files only/);
  checkEntries(t, doc, 1);
  t.equal(doc.methods[0]!.samples[0]!.bytes, doc.source.tensorBytes);
  t.equal(doc.ceilings[0]!.samples[0]!.bytes, doc.source.fileBytes, 'the download moved the whole object');
  t.ok(server.requests.some((q) => q.range === `bytes=0-${doc.source.fileBytes - 1}`), 'the naive baseline downloaded the whole object in one request');
});

t.test('bench over HTTP on safetensors as it is: one file (the naive baseline parses it too), and a sharded index (every shard downloaded for the ceiling)', { skip: why }, async (t) => {
  const dir = t.testdir();
  const st = join(dir, 'model.safetensors');
  await writeSyntheticSafetensors(st, 8 * 2 ** 20);
  // The same tensors split in two shards, with their index.
  const raw = readFileSync(st);
  const n = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + n).toString()) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  delete header.__metadata__;
  const names = Object.keys(header).sort((a, b) => header[a]!.data_offsets[0] - header[b]!.data_offsets[0]);
  const weightMap: Record<string, string> = {};
  [names.slice(0, names.length / 2), names.slice(names.length / 2)].forEach((part, k) => {
    const file = `shard-${k}.safetensors`;
    writeSafetensors(join(dir, file), part.map((name) => ({ name, dtype: header[name]!.dtype, shape: header[name]!.shape, data: raw.subarray(8 + n + header[name]!.data_offsets[0], 8 + n + header[name]!.data_offsets[1]) })));
    for (const name of part) weightMap[name] = file;
  });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
  const server = await startHttpServer(dir);
  t.teardown(() => server.close());
  const tensorBytes = raw.length - 8 - n;
  for (const [what, url, files] of [
    ['one file', `${server.url}/model.safetensors`, 1],
    ['an index', `${server.url}/model.safetensors.index.json`, 2],
  ] as const) {
    const r = await cli('bench', url, '--runs', '1', '--device', 'cpu', '--json');
    t.equal(r.code, 0, `${what}: ${r.stderr}`);
    const doc = JSON.parse(r.stdout) as BenchResult;
    t.equal(doc.source.tensorBytes, tensorBytes, `${what}: the tensors' bytes, from the headers`);
    t.equal(doc.source.tensors, names.length);
    checkEntries(t, doc, 1);
    for (const m of doc.methods) t.equal(m.samples[0]!.bytes, tensorBytes, `${what}: ${m.id} loaded every tensor`);
    const fileBytes = files === 1 ? raw.length : statSync(join(dir, 'shard-0.safetensors')).size + statSync(join(dir, 'shard-1.safetensors')).size;
    t.equal(doc.source.fileBytes, fileBytes, `${what}: the files' bytes`);
    t.equal(doc.ceilings[0]!.samples[0]!.bytes, fileBytes, `${what}: the raw download moved every file whole`);
    if (files === 1) t.same(doc.methods.map((m) => m.id), ['plaid', 'simple', 'naive'], 'one file: the naive baseline runs, parsing the safetensors header from memory');
    else t.match(doc.skipped, [{ id: 'mmap' }, { id: 'naive', reason: 'it reads one file, and this checkpoint is 2 files' }], 'several files: no naive baseline, said why');
  }
});

const tmpfsRepo = onTmpfs(ROOT) ? 'the test directory is on tmpfs, whose pages cannot be evicted' : false;

t.test('page-cache eviction of a real file on disk, checked with mincore', { skip: why || tmpfsRepo }, async (t) => {
  const dir = t.testdir();
  const f = join(dir, 'data.bin');
  writeFileSync(f, Buffer.alloc(8 << 20, 7));
  readFileSync(f);
  t.ok(pageCacheResidency(f) > 0.99, 'a file just written and read is cached');
  const left = evictFromPageCache(f);
  t.ok(left <= 0.02, `evicted (${(left * 100).toFixed(1)}% left; dirty pages are synced first)`);
  t.ok(pageCacheResidency(f) <= 0.02, 'checking residency reads nothing in');
  readFileSync(f);
  t.ok(pageCacheResidency(f) > 0.99, 'cached again after a read');
  t.equal(pageCacheResidency(join(VECTORS, 'INDEX.json')) >= 0, true);
  t.throws(() => evictFromPageCache(join(dir, 'missing')), { code: 'E_NOT_FOUND' });
  t.throws(() => pageCacheResidency(dir), { code: 'E_INPUT' });
});

t.test('usage errors exit 2 before any work; bad sources exit 1 with a clear message', async (t) => {
  const dir = t.testdir({ 'notes.txt': 'not a model\n', 'short.tensors': '|TZR|' });
  const usage: [string[], RegExp][] = [
    [['--size', '12XB'], /"12XB" is not a size/],
    [['--runs', '0'], /--runs must be between 1 and 100/],
    [['--report', join(dir, 'r.pdf')], /--report must name a \.html or \.svg file/],
    [['--methods', 'plaid,fast'], /--methods takes a comma-separated list of plaid, mmap, simple, naive \(not fast\)/],
    [[join(dir, 'notes.txt'), '--size', '1GiB'], /--size applies to the synthetic model only/],
    [['--methods', 'plaid,mmap', '--device', 'cuda:0'], /--methods mmap: --mmap cannot run here: it loads into host memory only, and this bench loads onto cuda:0\. Methods that apply to loads onto cuda:0: plaid, simple, naive/],
  ];
  const runs = await Promise.all(usage.map(([a]) => cli('bench', ...a, '--json')));
  usage.forEach(([a, msg], i) => {
    t.equal(runs[i]!.code, 2, `${a.join(' ')}: exit 2`);
    t.match(runs[i]!.stderr + JSON.parse(runs[i]!.stdout).error.message, msg);
    t.match(JSON.parse(runs[i]!.stdout), { ok: false, error: { code: 'E_USAGE' } });
  });
  t.same(existsSync(join(dir, 'r.pdf')), false);
  const bad: [string, RegExp][] = [
    [join(dir, 'missing.tensors'), /missing\.tensors: no such file or directory/],
    [join(dir, 'notes.txt'), /notes\.txt: unrecognised input format/],
    [join(dir, 'short.tensors'), /short\.tensors: 5 bytes is too small to be a tensorizer file/],
  ];
  const got = await Promise.all(bad.map(([s]) => cli('bench', s, '--runs', '1')));
  bad.forEach(([s, msg], i) => {
    t.equal(got[i]!.code, 1, `${s}: exit 1`);
    t.match(got[i]!.stderr, /^tensorize: error: /m);
    t.match(got[i]!.stderr, msg);
    t.notMatch(got[i]!.stderr, /\n\s+at /, 'no stack trace');
    t.equal(got[i]!.stdout, '');
  });
  const help = await cli('bench', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: tensorize bench \[options\] \[source\]/);
  t.match(help.stdout, /Examples:\n  tensorize bench /);
});

t.test('on a GPU machine, --methods mmap without --device is a usage error before any model is made', { skip: why || (gpu ? false : 'no GPU here') }, async (t) => {
  const tmp = t.testdir();
  const r = await runCli(['bench', '--methods', 'plaid,mmap', '--size', '16MiB'], { TMPDIR: tmp });
  t.equal(r.code, 2, r.stderr);
  t.match(r.stderr, /--methods mmap: --mmap cannot run here: it loads into host memory only, and this bench loads onto cuda:0/);
  t.match(r.stderr, /hint: add --device cpu/);
  t.same(readdirSync(tmp), [], 'no synthetic model was made');
});

/** A result with hostile labels, for the renderers alone. */
function fakeResult(): BenchResult {
  const entry = (id: string, role: BenchEntry['role'], label: string, runs: number[]): BenchEntry => ({
    id,
    role,
    label,
    samples: runs.map((g) => ({ seconds: 1 / g, bytes: 1e9, gbPerSecond: g, peakRssBytes: 2e8 })),
    gbPerSecond: summarize(runs),
    seconds: summarize(runs.map((g) => 1 / g)),
    peakRssBytes: 2e8,
    fractionOfCeiling: summarize(runs).median / 12,
  });
  return {
    ok: true,
    schema: 'tensorize-bench/1',
    tool: 'tensorize test',
    date: '2026-01-01T00:00:00.000Z',
    machine: { cpus: 2, cpuModel: 'CPU <b>&"x"', memoryBytes: 8e9, os: 'Linux', arch: 'x64', node: 'v20' },
    source: { kind: 'tensors', input: '/m/<script>alert(1)</script>.tensors', file: '/m/<script>alert(1)</script>.tensors', fileBytes: 1e9, tensorBytes: 1e9, tensors: 3 },
    device: { target: 'cpu', gpu: false, name: 'host memory', description: 'CPU: no usable GPU (x): benchmarking loads into host memory' },
    cache: { mode: 'warm', applies: true, minResidentBeforeRun: 1, message: 'Warm cache.' },
    runs: 3,
    settings: { readers: 8, chunkSize: 16 << 20 },
    ceilings: [entry('read-parallel', 'ceiling', 'raw read', [12, 11, 13]), entry('read-sequential', 'ceiling', 'raw read, 1 thread', [8, 8, 8])],
    ceiling: { id: 'read-parallel', label: 'raw read', gbPerSecond: 12 },
    methods: [entry('plaid', 'method', 'tensorize --plaid', [10, 9, 11]), entry('evil', 'peer', '<img src=x onerror=alert(1)> & "peer"', [1])],
    skipped: [{ id: 'naive', label: 'naive <x>', reason: 'needs & more' }],
    notes: ['note <1>'],
  };
}

t.test('reports: escaped text, bars and whiskers as the numbers say, one marked ceiling', async (t) => {
  const r = fakeResult();
  const svg = renderSvg(r);
  const html = renderHtml(r);
  for (const doc of [svg, html]) {
    t.notMatch(doc, /<script>|<img|<b>/, 'no markup from the data');
    t.match(doc, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  }
  t.match(html, /&lt;img src=x onerror=alert\(1\)&gt; &amp; &quot;peer&quot;/);
  t.match(html, /Skipped: naive &lt;x&gt;: needs &amp; more/);
  const c = parseChart(svg);
  t.equal(c.ymax, 15, 'a round axis above the highest whisker and line');
  t.same(c.bars.map((b) => [b.id, b.median]), [['plaid', 10], ['evil', 1]]);
  t.ok(close(c.bars[0]!.h, (10 / 15) * c.height, 1e-3));
  t.equal((svg.match(/class="whisker"/g) ?? []).length, 1, 'whiskers only where there is more than one run');
  t.match(svg, /<line x1="[0-9.]+" x2="[0-9.]+" y1="([0-9.]+)" y2="[0-9.]+"\/><line x1="[0-9.]+" x2="[0-9.]+" y1="\1"/, 'whisker caps');
  t.same(c.lines.map((l) => [l.id, l.binding]), [['read-parallel', true], ['read-sequential', false]]);
  t.match(svg, /83% of ceiling/);
  t.match(svg, /peak RSS 191 MiB/);
  t.match(html, /<tr><td>ceiling \*<\/td><td>raw read<\/td><td class="num">12\.00<\/td><td class="num">11\.00-13\.00<\/td><td class="num">100%<\/td>/);
});

t.test('bench without --json: the table on stdout, progress on stderr; --mmap\'s footnote', { skip: why }, async (t) => {
  const tmp = t.testdir();
  const r = await runCli(['bench', '--size', '16MiB', '--runs', '2', '--methods', 'plaid,mmap', '--device', 'cpu'], { TMPDIR: tmp });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^tensorize bench: synthetic bf16 transformer: /, 'stdout starts with the report');
  t.match(r.stdout, /\n\s+method\s+GB\/s\s+min-max\s+of ceiling\s+first tensor\s+time\s+peak RSS\n/, 'the table header');
  t.match(r.stdout, /\n\s+tensorize --mmap \(file pages mapped copy-on-write, no copy\)\s+[0-9.]+\s+[0-9.]+-[0-9.]+\s+[0-9]+% \u2020\s/, 'the --mmap row points at the footnote');
  t.match(r.stdout, /\n\* ceiling: raw read, .* GB\/s \(the (parallel|1-thread) raw read[^)]*\); "of ceiling" is each median over it\n/, 'the ceiling line says which read and why');
  t.match(r.stdout, /\n\u2020 --mmap can exceed 100% of the ceiling: it maps the file's cached pages into the process without copying them, while the ceiling is a read that copies every byte\.\n/);
  t.match(r.stderr, /run 2\/2: read x8 [0-9.]+, read x1 [0-9.]+, plaid [0-9.]+, mmap [0-9.]+ GB\/s/, 'progress on stderr');
  t.notMatch(r.stderr, /of ceiling|tensorize bench:/, 'no table on stderr');
  t.same(readdirSync(tmp), [], 'the synthetic model is removed');
});

t.test('the read ceiling: the parallel read, or a faster 1-thread read only when its runs are steady', async (t) => {
  const e = (id: string, runs: number[]): BenchEntry => ({
    id,
    role: 'ceiling',
    label: id,
    samples: runs.map((g) => ({ seconds: 1 / g, bytes: 1e9, gbPerSecond: g })),
    gbPerSecond: summarize(runs),
    seconds: summarize(runs.map((g) => 1 / g)),
  });
  const par = e('read-parallel', [6.0, 6.2, 5.9, 6.1, 6.0]);
  // What a shared VM gave: one thread spreading from 1.15 to 11.5 GB/s, median above the parallel read.
  let pick = readCeiling([par, e('read-sequential', [1.15, 11.5, 9.0, 10.0, 11.0])]);
  t.equal(pick.read.id, 'read-parallel', 'an unsteady 1-thread read is not the ceiling, however high its median');
  t.match(pick.reason, /parallel raw read; the 1-thread read had a higher median, but too unsteady runs/);
  t.match(pick.notes.join(' '), /runs spread from 1\.15 to 11\.50 GB\/s \(103% of its median, more than 50%\)/);
  pick = readCeiling([par, e('read-sequential', [8.0, 8.2, 7.9])]);
  t.equal(pick.read.id, 'read-sequential', 'a steady, faster 1-thread read is');
  t.same(pick.notes, []);
  t.equal(readCeiling([par, e('read-sequential', [5, 5, 5])]).read.id, 'read-parallel', 'a slower one is not');
  // One or two runs show no spread: a single lucky read must not set the bar.
  for (const runs of [[11.5], [11.5, 11.4]]) {
    pick = readCeiling([e('read-parallel', runs.map(() => 6)), e('read-sequential', runs)]);
    t.equal(pick.read.id, 'read-parallel', `${runs.length} run(s) of a faster 1-thread read: the parallel read stays the ceiling`);
    t.match(pick.reason, /do(es)? not show it steady/);
  }
  t.equal(readCeiling([e('download', [1, 2])]).read.id, 'download', 'remote: the download');
  t.equal(spreadOf(summarize([2, 3, 4])), 2 / 3);

  // The text report: the ceiling's reason, a warning when its own runs spread, the --mmap footnote.
  const r = fakeResult();
  r.ceilings[0] = { ...e('read-parallel', [3, 12, 13]), fractionOfCeiling: 1 };
  r.ceiling = { id: 'read-parallel', label: 'raw read', gbPerSecond: 12, reason: 'the parallel raw read' };
  r.methods.push({ ...r.methods[0]!, id: 'mmap', label: 'tensorize --mmap', fractionOfCeiling: 3.5 });
  const text = formatText(r);
  t.match(text, /\n\* ceiling: raw read, 12\.00 GB\/s \(the parallel raw read\); "of ceiling" is each median over it\n  its runs spread from 3\.00 to 13\.00 GB\/s: the fractions of it are rough/);
  t.match(text, /tensorize --mmap\s+10\.00\s+9\.00-11\.00\s+350% \u2020/);
  t.match(text, /\u2020 --mmap can exceed 100% of the ceiling: it maps the file's cached pages/);
  t.notMatch(formatText(fakeResult()), /\u2020|spread/, 'neither note without --mmap or a spread ceiling');
  t.match(renderHtml(r), /<p class="foot">\u2020 --mmap can exceed 100% of the ceiling/);
});

/** Every <text> of an SVG with its estimated box (0.6 em per character; ASCENT/DESCENT of the font size about the baseline). */
function textBoxes(svg: string) {
  return [...svg.matchAll(/<text x="([0-9.-]+)" y="([0-9.-]+)"([^>]*)>([^<]*)<\/text>/g)].map((m) => {
    const [x, y, attrs, s] = [Number(m[1]), Number(m[2]), m[3]!, m[4]!];
    const size = Number(/font-size="([0-9.]+)"/.exec(attrs)?.[1] ?? 12);
    const w = 0.6 * size * s.replace(/&[a-z#0-9]+;/g, '_').length;
    const x0 = attrs.includes('text-anchor="middle"') ? x - w / 2 : attrs.includes('text-anchor="end"') ? x - w : x;
    return { text: s, cls: /class="([^"]+)"/.exec(attrs)?.[1], id: /data-id="([^"]+)"/.exec(attrs)?.[1], x0, x1: x0 + w, y0: y - ASCENT * size, y1: y + DESCENT * size };
  });
}

t.test('the chart: no bar label is drawn across a ceiling line, wherever the bars fall', async (t) => {
  let checked = 0;
  for (let v = 0.5; v <= 14; v += 0.25) {
    const r = fakeResult();
    const runs = [v * 0.98, v, v * 1.02];
    r.methods[0] = { ...r.methods[0]!, samples: runs.map((g) => ({ seconds: 1 / g, bytes: 1e9, gbPerSecond: g })), gbPerSecond: summarize(runs), fractionOfCeiling: v / 12 };
    const svg = renderSvg(r);
    const c = parseChart(svg);
    const lines = [...svg.matchAll(/<line class="ceiling[^"]*" data-id="([^"]+)"[^>]*x1="([0-9.]+)" x2="([0-9.]+)" y1="([0-9.]+)" y2="([0-9.]+)"/g)].map((m) => ({ id: m[1]!, x0: Number(m[2]), x1: Number(m[3]), y: Number(m[4]) }));
    t.equal(lines.length, 2);
    const labels = textBoxes(svg).filter((b) => b.cls === 'value' || b.cls === 'fraction');
    t.same(labels.map((b) => `${b.cls} ${b.id}`), ['value plaid', 'fraction plaid', 'value evil', 'fraction evil'], 'a value and a fraction label per bar');
    for (const b of labels) {
      for (const l of lines) {
        if (b.x0 < l.x1 && b.x1 > l.x0 && l.y >= b.y0 && l.y <= b.y1) t.fail(`bar at ${v} GB/s: "${b.text}" (y ${b.y0.toFixed(1)}-${b.y1.toFixed(1)}) crosses the ${l.id} line at y ${l.y}`);
        checked++;
      }
      if (b.y0 < 70) t.fail(`bar at ${v} GB/s: "${b.text}" reaches into the title lines`);
    }
    const whiskerTop = c.top + c.height - (runs[2]! / c.ymax) * c.height;
    if (!labels.filter((b) => b.id === 'plaid').every((b) => b.y1 < whiskerTop)) t.fail(`bar at ${v} GB/s: its labels are not above its whisker`);
    if (v === 11.5) checkChart(t, svg, r);
  }
  t.equal(checked, 55 * 4 * 2, 'every label checked against every ceiling line');
});

t.test('summaries: the median of an even count is the mean of the middle two', async (t) => {
  t.same(summarize([3, 1, 2]), { median: 2, min: 1, max: 3 });
  t.same(summarize([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4 });
  t.same(summarize([5]), { median: 5, min: 5, max: 5 });
  t.same([13.478, 0.1, 0.0042, 0].map(formatRate), ['13.48', '0.10', '0.0042', '0.00'], 'GB/s: two decimals, two digits below 0.1');
});
