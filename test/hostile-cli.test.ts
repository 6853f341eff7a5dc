/**
 * What a new user and hostile inputs hit through the command line (issue #12): work bounded
 * by the input rather than by what it claims, names that cannot be written, outputs that
 * would destroy their input, results on stdout. Each case runs the CLI as users do and
 * checks the exit code, the message, and what is left on disk.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkpointZip, P, pickleDict, tensorV2 } from './helpers/pickle.js';
import { startProxy, startS3, S3_ENV } from './helpers/servers.js';
import { BIN, bytes, runCli, VECTORS, writeSafetensors } from './helpers/util.js';

const APPENDS = Buffer.from('e');
const POP = Buffer.from('0');

/** `levels` nested lists, each holding the one below twice (a DAG: 2^levels paths to the bottom). */
function sharedLists(bottom: Buffer, levels: number): Buffer {
  const parts = [bottom, P.binput(0), POP];
  for (let i = 1; i <= levels; i++) parts.push(P.emptyList, P.mark, P.binget(i - 1), P.binget(i - 1), APPENDS, P.binput(i), POP);
  parts.push(P.binget(levels));
  return Buffer.concat(parts);
}

function errorLine(stderr: string): string {
  return stderr.split('\n').find((l) => l.startsWith('tensorize: error: ')) ?? `(no error line in: ${stderr.trim().slice(0, 400)})`;
}

t.test('7. shared references in a pickle do not multiply the work', async (t) => {
  const dir = t.testdir({});
  // 30 levels of lists sharing their children, a tensor at the bottom: 2^30 names.
  const pkl = pickleDict([['w', sharedLists(tensorV2('FloatStorage', '0', 4, 0, [4], [1]), 30)]]);
  const ckpt = join(dir, 'dag.pt');
  writeFileSync(ckpt, checkpointZip(pkl, { '0': bytes(16, 1) }));
  t.ok(statSync(ckpt).size < 2048, 'a checkpoint of a few hundred bytes');
  const r = await runCli(['serialize', ckpt, '-o', join(dir, 'out.tensors')]);
  t.equal(r.code, 1, r.stderr);
  t.match(errorLine(r.stderr), /1 tensor\(s\) would be named 1073741824 times, more than 100000; refusing to expand it/);
  t.same(readdirSync(dir), ['dag.pt'], 'no output');
  // In this process: the refusal costs no memory to speak of (it once grew to 6 GB).
  const { openInput } = await import('../src/inputs/index.js');
  const rss0 = process.memoryUsage().rss;
  await t.rejects(openInput(ckpt), { code: 'E_PICKLE' });
  t.ok(process.memoryUsage().rss - rss0 < 64 * 2 ** 20, `rss grew by ${((process.memoryUsage().rss - rss0) / 2 ** 20).toFixed(1)} MiB`);

  // The same sharing over values that are not tensors costs nothing: they are skipped whole.
  const ints = sharedLists(P.int(7), 30);
  const ok = join(dir, 'ints.pt');
  writeFileSync(ok, checkpointZip(pickleDict([['w', tensorV2('FloatStorage', '0', 4, 0, [4], [1])], ['meta', ints]]), { '0': bytes(16, 1) }));
  const r2 = await runCli(['serialize', ok, '-o', join(dir, 'ints.tensors'), '--json']);
  t.equal(r2.code, 0, r2.stderr);
  t.match(JSON.parse(r2.stdout), { ok: true, tensors: 1, warnings: [/skipped 1 non-tensor value\(s\): meta/] });

  // Many distinct tensors do not lift the limit out of reach: 20,000 tensors under 12
  // levels of shared lists would be 82 million names.
  const many = Buffer.concat([P.emptyList, P.mark, ...Array.from({ length: 20_000 }, () => tensorV2('FloatStorage', '0', 4, 0, [4], [1])), APPENDS]);
  const wide = join(dir, 'wide.pt');
  writeFileSync(wide, checkpointZip(pickleDict([['w', sharedLists(many, 12)]]), { '0': bytes(16, 1) }));
  const rw = await runCli(['serialize', wide, '-o', join(dir, 'wide.tensors')]);
  t.equal(rw.code, 1, rw.stderr);
  t.match(errorLine(rw.stderr), /its 20000 tensor\(s\) would be named 81920000 times, more than 160000/);

  // A list holding 100,000 references to one 100,000-element list of numbers: each
  // reference costs nothing more than the first (this once took 10^10 steps).
  const numbers = Buffer.concat([P.emptyList, P.binput(0), P.mark, ...Array.from({ length: 100_000 }, (_, i) => P.int(i)), APPENDS, POP]);
  const refs = Buffer.concat([numbers, P.emptyList, P.mark, ...Array.from({ length: 100_000 }, () => P.binget(0)), APPENDS]);
  const square = join(dir, 'square.pt');
  writeFileSync(square, checkpointZip(pickleDict([['w', tensorV2('FloatStorage', '0', 4, 0, [4], [1])], ['meta', refs]]), { '0': bytes(16, 1) }));
  const rs = await runCli(['serialize', square, '-o', join(dir, 'square.tensors'), '--json']);
  t.equal(rs.code, 0, rs.stderr);
  t.match(JSON.parse(rs.stdout), { tensors: 1, warnings: [/skipped 1 non-tensor value\(s\): meta/] });

  // Tied weights (a few names per tensor) are still written, each name a copy.
  const tied = join(dir, 'tied.pt');
  writeFileSync(tied, checkpointZip(pickleDict([['w', sharedLists(tensorV2('FloatStorage', '0', 4, 0, [4], [1]), 3)]]), { '0': bytes(16, 1) }));
  const r3 = await runCli(['serialize', tied, '-o', join(dir, 'tied.tensors'), '--json']);
  t.equal(r3.code, 0, r3.stderr);
  t.equal(JSON.parse(r3.stdout).tensors, 8, 'w.0.0.0 ... w.1.1.1');
});

t.test('8. an expanded (stride 0) view is refused above the limit, written when asked for', async (t) => {
  const dir = t.testdir({});
  const huge = join(dir, 'expand.pt');
  writeFileSync(huge, checkpointZip(pickleDict([['x', tensorV2('FloatStorage', '0', 65536, 0, [65536, 65536], [0, 1])]]), { '0': bytes(65536 * 4, 2) }));
  const r = await runCli(['serialize', huge, '-o', join(dir, 'out.tensors')]);
  t.equal(r.code, 1, r.stderr);
  t.match(errorLine(r.stderr), /expanded view.*"x" of size \[65536,65536\] and stride \[0,1\], which spans 256 KiB of storage and takes 16 GiB written out/);
  t.match(r.stderr, /--expand-views/);
  t.same(readdirSync(dir), ['expand.pt'], 'nothing written');

  // Asked for: written element by element, with a warning; the rows repeat the storage.
  const small = join(dir, 'small.pt');
  const row = bytes(4096 * 4, 3);
  writeFileSync(small, checkpointZip(pickleDict([['x', tensorV2('FloatStorage', '0', 4096, 0, [4500, 4096], [0, 1])]]), { '0': row }));
  const refused = await runCli(['serialize', small, '-o', join(dir, 'small.tensors')]);
  t.equal(refused.code, 1, '70 MiB of growth is over the limit');
  const out = join(dir, 'small.tensors');
  const w = await runCli(['serialize', small, '-o', out, '--expand-views']);
  t.equal(w.code, 0, w.stderr);
  t.match(w.stderr, /warning: 1 expanded view\(s\).*70\.3 MiB more than the checkpoint stores/);
  const st = join(dir, 'small.safetensors');
  t.equal((await runCli(['export', out, '-o', st])).code, 0);
  const data = readFileSync(st);
  const body = data.subarray(data.length - 4500 * 4096 * 4);
  t.ok(body.subarray(0, row.length).equals(row) && body.subarray(body.length - row.length).equals(row), 'first and last rows are the storage');

  // Below the limit no flag is needed, and the warning still says what happened.
  const tiny = join(dir, 'tiny.pt');
  writeFileSync(tiny, checkpointZip(pickleDict([['x', tensorV2('FloatStorage', '0', 4, 0, [1000, 4], [0, 1])]]), { '0': bytes(16, 4) }));
  const r3 = await runCli(['serialize', tiny, '-o', join(dir, 'tiny.tensors')]);
  t.equal(r3.code, 0, r3.stderr);
  t.match(r3.stderr, /warning: 1 expanded view/);
});

t.test('10. lone UTF-16 surrogates in safetensors names are refused', async (t) => {
  const dir = t.testdir({});
  for (const names of [['\\ud800'], ['\\ud800', '\\udfff'], ['a\\udfffb', 'a\\ufffdb']]) {
    const entries = names.map((n, i) => `"${n}":{"dtype":"U8","shape":[1],"data_offsets":[${i},${i + 1}]}`);
    let json = `{${entries.join(',')}}`;
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const f = join(dir, 'names.safetensors');
    writeFileSync(f, Buffer.concat([len, Buffer.from(json), Buffer.alloc(names.length, 1)]));
    const r = await runCli(['serialize', f, '-o', join(dir, 'out.tensors')]);
    t.equal(r.code, 1, `${names.join(', ')}: ${r.stderr}`);
    t.match(errorLine(r.stderr), /tensor name ".*\\ud[8f][0f][0f].*" holds a lone UTF-16 surrogate/);
    t.notOk(existsSync(join(dir, 'out.tensors')), 'no output');
  }
});

t.test('11. -o naming the input (same path, symlink, hard link) is refused before any work', async (t) => {
  const dir = t.testdir({});
  const st = join(dir, 'm.safetensors');
  writeSafetensors(st, [{ name: 'w', dtype: 'F32', shape: [4], data: bytes(16, 5) }]);
  const tz = join(dir, 'm.tensors');
  t.equal((await runCli(['serialize', st, '-o', tz])).code, 0);
  symlinkSync('m.safetensors', join(dir, 'link.safetensors'));
  linkSync(tz, join(dir, 'hard.tensors'));
  const before = { st: readFileSync(st), tz: readFileSync(tz) };
  const cases: [string, string[]][] = [
    ['serialize into its input', ['serialize', st, '-o', st]],
    ['serialize into a symlink to its input', ['serialize', st, '-o', join(dir, 'link.safetensors')]],
    ['serialize from a symlink into its target', ['serialize', join(dir, 'link.safetensors'), '-o', st]],
    ['export into its input', ['export', tz, '-o', tz]],
    ['export into a hard link of its input', ['export', tz, '-o', join(dir, 'hard.tensors')]],
  ];
  for (const [what, args] of cases) {
    const r = await runCli(args);
    t.equal(r.code, 2, `${what}: exit 2 (${r.stderr.trim()})`);
    t.match(errorLine(r.stderr), /-o .* (is the input|is the same file as the input .*): writing it would destroy the input/, what);
  }
  t.ok(readFileSync(st).equals(before.st) && readFileSync(tz).equals(before.tz), 'the inputs are untouched');
  // A sharded index: -o naming a shard is refused too.
  const shardDir = join(dir, 'sharded');
  mkdirSync(shardDir);
  writeSafetensors(join(shardDir, 'a.safetensors'), [{ name: 'x', dtype: 'F32', shape: [2], data: bytes(8, 6) }]);
  writeFileSync(join(shardDir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'a.safetensors' } }));
  const r = await runCli(['serialize', shardDir, '-o', join(shardDir, 'a.safetensors')]);
  t.equal(r.code, 2, r.stderr);
});

t.test('12. -o naming a directory writes into it under the input\'s name, as cp does', async (t) => {
  const dir = t.testdir({ out: {} });
  const st = join(dir, 'm.safetensors');
  writeSafetensors(st, [{ name: 'w', dtype: 'F32', shape: [4], data: bytes(16, 7) }]);
  const r = await runCli(['serialize', st, '-o', join(dir, 'out'), '--json']);
  t.equal(r.code, 0, r.stderr);
  t.equal(JSON.parse(r.stdout).output, join(dir, 'out', 'm.tensors'));
  t.ok(existsSync(join(dir, 'out', 'm.tensors')));
  const e = await runCli(['export', join(dir, 'out', 'm.tensors'), '-o', join(dir, 'out'), '--json']);
  t.equal(e.code, 0, e.stderr);
  t.equal(JSON.parse(e.stdout).path, join(dir, 'out', 'm.safetensors'));
  // A vector from elsewhere: written beside nothing but in the named directory.
  const v = await runCli(['export', join(VECTORS, 'dtypes_v1.tensors'), '-o', join(dir, 'out')]);
  t.equal(v.code, 0, v.stderr);
  t.ok(existsSync(join(dir, 'out', 'dtypes_v1.safetensors')));
  // A directory that is not there, or a file where a directory must be: usage errors up front.
  const tz = join(dir, 'out', 'm.tensors');
  for (const [o, why] of [
    [join(dir, 'nodir') + '/', /names a directory, and there is none/],
    [tz + '/', /names a directory, and it is not one/],
    [join(tz, 'x.safetensors'), /is not a directory/],
  ] as const) {
    const r = await runCli(['export', tz, '-o', o]);
    t.equal(r.code, 2, `export -o ${o}: ${r.stderr}`);
    t.match(errorLine(r.stderr), why);
    const s = await runCli(['serialize', st, '-o', o]);
    t.equal(s.code, 2, `serialize -o ${o}: ${s.stderr}`);
  }
  t.same(readdirSync(join(dir, 'out')).sort(), ['dtypes_v1.safetensors', 'm.safetensors', 'm.tensors'], 'nothing else written');
  t.notOk(existsSync(join(dir, 'nodir')));
});

t.test('15. load with no GPU says once, on stderr, why it loads into host memory', async (t) => {
  const f = join(VECTORS, 'dtypes_v1.tensors');
  const r = await runCli(['load', f, '--plaid']);
  t.equal(r.code, 0, r.stderr);
  const { native } = await import('../src/native/binding.js');
  if (native().info().deviceCount > 0) {
    t.notMatch(r.stderr, /no usable GPU/, 'a GPU was used');
    return;
  }
  t.equal(r.stderr.match(/no usable GPU/g)?.length, 1, `said once: ${r.stderr}`);
  t.match(r.stderr, /^warning: no usable GPU \(.+\): loading into host memory/m);
  t.match(r.stdout, /^device\s+cpu \(host memory\)/m, 'the report is on stdout');
  const quiet = await runCli(['load', f, '--plaid', '--device', 'cpu']);
  t.equal(quiet.code, 0);
  t.notMatch(quiet.stderr, /no usable GPU/, '--device cpu asks for host memory: nothing to explain');
  const j = await runCli(['load', f, '--json']);
  t.type(JSON.parse(j.stdout).noGpu, 'string', 'the JSON report says why too');
});

t.test('16. no driver reads "no NVIDIA driver found", not a CUDA error name', async (t) => {
  const { noDeviceReason, noDeviceHints } = await import('../src/native/report.js');
  // The device layer says why in words (native/src/device_cuda.cc); these are the hints to it.
  const base = { backend: 'none', deviceCount: 0, devices: [], driverVersion: 0, hashImplementation: '', populate: true };
  const none = { ...base, noDeviceReason: 'no NVIDIA driver found (libcuda.so.1 is not installed)' };
  t.equal(noDeviceReason(none as never), 'no NVIDIA driver found (libcuda.so.1 is not installed)');
  t.match(noDeviceHints(none as never).join('\n'), /install the NVIDIA driver/);
  t.match(noDeviceHints({ ...base, noDeviceReason: 'the NVIDIA driver is too old: it lacks cuLaunchHostFunc' } as never).join('\n'), /update the NVIDIA driver/);
  t.equal(noDeviceReason({ ...base, backend: 'cuda', deviceCount: 1, driverVersion: 13000, noDeviceReason: '' } as never), undefined);
  // The CLI's own words, wherever it explains a missing GPU.
  const r = await runCli(['load', join(VECTORS, 'dtypes_v1.tensors'), '--device', 'cuda']);
  const { native } = await import('../src/native/binding.js');
  const i = native().info();
  if (i.deviceCount === 0) {
    t.equal(r.code, 1);
    t.match(r.stderr, new RegExp(`no CUDA device is usable: ${noDeviceReason(i)!.replace(/[()]/g, '\\$&')}`));
    t.notMatch(r.stderr, /cudaError/);
  }
});

t.test('17. --filter globs match Hugging Face names by their end, as load --help shows', async (t) => {
  const { compileFilter } = await import('../src/ops/load.js');
  const names = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.input_layernorm.weight', 'model.layers.11.mlp.down_proj.weight', 'model.layers.11.mlp.down_proj.bias', 'lm_head.weight', 'xlayers.0.weight'];
  const pick = (f: string) => names.filter(compileFilter(f)!);
  t.same(pick('layers.*.weight'), names.slice(1, 4), 'the help example works on real names');
  t.same(pick('lm_head.weight'), ['lm_head.weight']);
  t.same(pick('model.layers.0.*'), names.slice(1, 3), 'whole names still match');
  t.same(pick('bias'), ['model.layers.11.mlp.down_proj.bias'], 'a last component');
  t.same(pick('*_proj.weight'), [names[1], names[3]]);
  t.same(pick('ayers.*.weight'), [], 'only from a dot');
  t.same(pick('/q_proj|lm_head/'), [names[1], 'lm_head.weight'], 'a regex searches anywhere');
  const help = await runCli(['load', '--help']);
  t.match(help.stdout, /--filter 'layers\.\*\.weight'/, 'the example is in the help');
  t.match(help.stdout, /matches the whole name or its end after a dot/, 'and how globs match');
});

t.test('18. Ctrl-C during serialize -o s3:// reports whether the upload was aborted, and what to clean up when not', async (t) => {
  const dir = t.testdir();
  const s3 = await startS3(join(dir, 'data'));
  const closers: (() => unknown)[] = [() => s3.close()];
  t.teardown(async () => {
    for (const c of closers.reverse()) await c();
  });
  const { writeSyntheticSafetensors } = await import('../src/ops/synthetic.js');
  const model = join(dir, 'model.safetensors');
  await writeSyntheticSafetensors(model, 13 << 20);
  // s3rver has no AbortMultipartUpload (it answers 405, as some S3-compatible servers do):
  // the proxy answers it with 204 where a test needs a server that has it.
  const interrupt = async (refuseAbort: boolean, key: string) => {
    const proxy = await startProxy(s3.endpoint, (method, url) => (method === 'PUT' && /partNumber=2\b/.test(url) ? 'hold' : method === 'DELETE' ? (refuseAbort ? 405 : 204) : 'pass'));
    closers.push(() => proxy.close());
    const child = spawn(process.execPath, [BIN, 'serialize', model, '-o', `s3://b/${key}`, '--endpoint', proxy.endpoint, '--part-size', '5MiB', '--retries', '0'], { env: { ...process.env, ...S3_ENV } });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    // Until part 2 is in flight (however busy the machine; the tap timeout guards a hang).
    while (!proxy.seen.some((s) => /partNumber=2\b/.test(s)) && child.exitCode === null) await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGINT');
    const code = await new Promise((r) => child.on('close', (c) => r(c)));
    return { code, stderr, seen: proxy.seen };
  };
  const ok = await interrupt(false, 'out/ok.tensors');
  t.equal(ok.code, 130, ok.stderr);
  t.ok(ok.seen.some((s) => /^DELETE .*uploadId=/.test(s)), 'the upload was aborted');
  t.notMatch(ok.stderr, /could not be aborted/);
  t.match(ok.stderr, /s3:\/\/b\/out\/ok\.tensors: interrupted; the multipart upload was aborted and no object was created/);
  const refused = await interrupt(true, 'out/refused.tensors');
  t.equal(refused.code, 130, refused.stderr);
  const id = /uploadId=([^&\s]+)/.exec(refused.seen.find((s) => /^DELETE /.test(s)) ?? '')?.[1];
  t.ok(id, 'an abort was tried');
  t.match(refused.stderr, /s3:\/\/b\/out\/refused\.tensors: the incomplete multipart upload .* could not be aborted \(.*HTTP 405.*\); the parts it holds stay stored, and billed/);
  t.match(refused.stderr, new RegExp(`aws s3api abort-multipart-upload --bucket b --key out/refused\\.tensors --upload-id ${decodeURIComponent(id ?? 'x')} --endpoint-url http://127\\.0\\.0\\.1:[0-9]+`));
  t.notMatch(refused.stderr, /upload aborted/, 'it does not claim an abort that did not happen');
});
