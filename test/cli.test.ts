// The command line as users run it (node bin/tensorize.js, built by `npm test`'s pretest):
// exit codes, --json on stdout only, messages that name the tensor and hash, no partial output.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, bytes, ROOT, VECTORS, writeSafetensors } from './helpers/util.js';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('serialize, info, verify, export through the CLI', async (t) => {
  const dir = t.testdir();
  writeSafetensors(join(dir, 'm.safetensors'), [
    { name: 'a.weight', dtype: 'BF16', shape: [16, 8], data: bytes(256, 1) },
    { name: 'a.bias', dtype: 'F32', shape: [16], data: bytes(64, 2) },
  ]);
  let r = cli('serialize', join(dir, 'm.safetensors'), '-o', join(dir, 'm.tensors'), '--json');
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  t.match(doc, { ok: true, tensors: 2, dataBytes: 320, dataVersion: 2 });
  t.type(doc.peakRssBytes, 'number');
  t.type(doc.gbPerSecond, 'number');

  r = cli('serialize', join(dir, 'm.safetensors'));
  t.equal(r.code, 0);
  t.match(r.stdout, /^wrote .*m\.tensors: 2 tensors, 320 B in .* s \(.* GB\/s\), peak RSS .*, data version 2\n$/, 'the summary is the result: stdout');
  t.match(r.stderr, /^serializing 2 tensors \(320 B\) from 1 safetensors file\(s\)/, 'progress on stderr');
  t.notMatch(r.stderr, /wrote/);
  t.equal(cli('serialize', join(dir, 'm.safetensors'), '-q').stdout, '', '-q: nothing');

  r = cli('info', join(dir, 'm.tensors'));
  t.equal(r.code, 0);
  t.equal(r.stderr, '', 'the table is the result: stdout');
  t.match(r.stdout, /data version:\s+2/);
  t.match(r.stdout, /a\.weight\s+state_dict\s+bfloat16\s+\[16, 8\]\s+256/);
  t.match(cli('info', join(dir, 'm.tensors')).stdout.split('\n').filter((l) => /^a\.bias/.test(l)), [/^a\.bias\s+state_dict\s+float32\s+\[16\]\s+64$/], 'grep finds a tensor');
  const q = cli('info', join(dir, 'm.tensors'), '-q');
  t.same([q.code, q.stdout, q.stderr], [0, '', ''], 'info -q');
  r = cli('info', join(dir, 'm.tensors'), '--json');
  t.match(JSON.parse(r.stdout), { dataVersion: 2, tensorCount: 2, dataBytes: 320, tensors: [{ name: 'a.weight', dtype: 'bfloat16', shape: [16, 8], bytes: 256 }, { name: 'a.bias' }] });

  r = cli('verify', join(dir, 'm.tensors'));
  t.equal(r.code, 0);
  t.match(r.stdout, /^OK .*2 tensors.*4 hashes checked/m);
  t.equal(r.stderr, '');

  r = cli('export', join(dir, 'm.tensors'), '-o', join(dir, 'back.safetensors'));
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^wrote .*back\.safetensors: 2 tensors/);
  // Largest element size first (as the safetensors writer orders them): a.bias (F32), then a.weight (BF16).
  const back = readFileSync(join(dir, 'back.safetensors'));
  const src = readFileSync(join(dir, 'm.safetensors'));
  t.same(back.subarray(-320), Buffer.concat([src.subarray(-64), src.subarray(-320, -64)]), 'the same bytes, F32 first');
  const hlen = Number(back.readBigUInt64LE(0));
  const header = JSON.parse(back.subarray(8, 8 + hlen).toString());
  t.same(header['a.bias'].data_offsets, [0, 64]);
  t.same(header['a.weight'].data_offsets, [64, 320]);
});

t.test('verify names the tensor and the hash that failed, exit 1', async (t) => {
  const dir = t.testdir();
  const f = join(dir, 'd.tensors');
  copyFileSync(join(VECTORS, 'dtypes_v1.tensors'), f);
  const b = readFileSync(f);
  b[b.length - 100] ^= 0x01; // inside the data of the last tensor
  writeFileSync(f, b);
  const r = cli('verify', f);
  t.equal(r.code, 1);
  t.match(r.stdout, /FAILED: tensor "[^"]+" \(#14\): CRC32 mismatch: stored [0-9a-f]{8}, computed [0-9a-f]{8}/);
  t.match(r.stdout, /SHA-256 mismatch/);
  t.match(r.stderr, /tensorize: error: .*: tensor "[^"]+" does not match its stored CRC32 and SHA-256\n/);
  const j = cli('verify', f, '--json');
  t.equal(j.code, 1);
  const doc = JSON.parse(j.stdout);
  t.equal(doc.ok, false);
  t.equal(doc.failures.length, 2);
  t.equal(doc.failures[0].index, 14);
});

t.test('exit codes: 2 for usage errors, 1 for bad input; no stack traces', async (t) => {
  const dir = t.testdir({ 'junk.bin': 'not a model at all, just some text here' });
  let r = cli('serialize');
  t.equal(r.code, 2);
  t.match(r.stderr, /^tensorize: error: missing required argument 'input'\n  hint: see tensorize serialize --help\n$/);
  r = cli('frobnicate');
  t.equal(r.code, 2);
  t.match(r.stderr, /^tensorize: error: unknown command 'frobnicate'\n  hint: see tensorize --help\n$/);
  t.equal(cli('--verbose').code, 2, 'global options but no command: a usage error too');
  r = cli();
  t.equal(r.code, 2, 'no command is a usage error');
  t.match(r.stderr, /Usage: tensorize \[options\] \[command\][^]*tensorize: error: no command given\n$/);
  t.equal(r.stdout, '');
  r = cli('load', join(VECTORS, 'dtypes_v1.tensors'), '--bogus');
  t.equal(r.code, 2);
  t.match(r.stderr, /^tensorize: error: unknown option '--bogus'\n  hint: see tensorize load --help\n$/, 'the same prefix as other errors, and where the usage is');
  for (const c of ['verify', 'info', 'load', 'export', 'bench', 'serialize']) t.notMatch(cli(c, '--help').stdout, /\(default: \{\}\)/, `${c} --help shows no empty default`);
  t.notMatch(cli('demo', '--help').stdout, /268435456/, 'demo --help shows sizes as sizes');
  r = cli('serialize', 'x.safetensors', '--threads', 'many');
  t.equal(r.code, 2);
  t.match(r.stderr, /--threads must be a positive integer/);
  r = cli('export', join(VECTORS, 'dtypes_v1.tensors'));
  t.equal(r.code, 2, 'export needs -o');
  r = cli('verify', join(dir, 'nope.tensors'));
  t.equal(r.code, 1);
  t.match(r.stderr, /no such file or directory/);
  for (const args of [['serialize', join(dir, 'nope.safetensors')], ['serialize', join(dir, 'nope.safetensors'), '-o', join(dir, 'out.tensors')], ['serialize', join(dir, 'nope.safetensors'), '--json']]) {
    r = cli(...args);
    t.equal(r.code, 1, `${args.join(' ')}: exit 1`);
    t.match(args.includes('--json') ? JSON.parse(r.stdout) : r.stderr, args.includes('--json') ? { ok: false, error: { code: 'E_NOT_FOUND' } } : /^tensorize: error: .*nope\.safetensors: no such file or directory$/m, 'a missing input is named, not an unexpected error');
    t.notMatch(r.stderr, /unexpected error/);
  }
  r = cli('verify', join(dir, 'junk.bin'));
  t.equal(r.code, 1);
  t.match(r.stderr, /is not a tensorizer file/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  r = cli('verify', join(dir, 'junk.bin'), '--json');
  t.match(JSON.parse(r.stdout), { ok: false, error: { code: 'E_FORMAT' } });
  r = cli('serialize', join(dir, 'junk.bin'));
  t.equal(r.code, 1);
  t.match(r.stderr, /unrecognised input format/);
  r = cli('--help');
  t.equal(r.code, 0);
  t.match(r.stdout, /serialize.*\n.*verify/s);
  for (const c of ['serialize', 'verify', 'info', 'export', 'demo']) {
    r = cli(c, '--help');
    t.equal(r.code, 0);
    t.match(r.stdout, new RegExp(`Usage: tensorize ${c}`));
  }
});

t.test('export refuses what safetensors cannot express, leaving no file', async (t) => {
  const dir = t.testdir();
  const r = cli('export', join(VECTORS, 'structured_paths.tensors'), '-o', join(dir, 'x.safetensors'));
  t.equal(r.code, 1);
  t.match(r.stderr, /structured path.*--join-paths/);
  t.same(readdirSync(dir), []);
  const meta = cli('export', join(VECTORS, 'meta_marker_v4.tensors'), '-o', join(dir, 'm.safetensors'), '--meta', 'error');
  t.equal(meta.code, 1);
  t.match(meta.stderr, /\.vllm_tensorized_marker" is a meta tensor/);
  const ok = cli('export', join(VECTORS, 'meta_marker_v4.tensors'), '-o', join(dir, 'm.safetensors'));
  t.equal(ok.code, 0);
  t.match(ok.stderr, /left out 1 meta tensor/);
});

t.test('Ctrl-C during serialize leaves no output and no temporary file', async (t) => {
  const dir = t.testdir();
  const { writeSyntheticSafetensors } = await import('../src/ops/synthetic.js');
  await writeSyntheticSafetensors(join(dir, 'big.safetensors'), 600 * 2 ** 20);
  const child = spawn(process.execPath, [BIN, 'serialize', join(dir, 'big.safetensors'), '-o', join(dir, 'big.tensors'), '--threads', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  // Wait until the copy has started (the temporary file exists), then interrupt.
  while (!readdirSync(dir).some((n) => n.includes('.tmp-')) && child.exitCode === null) await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGINT');
  const code = await new Promise((r) => child.on('exit', (c) => r(c)));
  t.equal(code, 130, err);
  t.same(readdirSync(dir), ['big.safetensors']);
  t.notOk(existsSync(join(dir, 'big.tensors')));
});

t.test('serialize a PyTorch checkpoint through the CLI (real worker pool, gathers included)', async (t) => {
  const dir = t.testdir();
  const fix = join(ROOT, 'fixtures', 'pytorch');
  let r = cli('serialize', join(fix, 'zip.pt'), '-o', join(dir, 'zip.tensors'), '--json', '--threads', '2');
  t.equal(r.code, 0, r.stderr);
  const manifest = JSON.parse(readFileSync(join(fix, 'manifest.json'), 'utf8')).files['zip.pt'];
  t.match(JSON.parse(r.stdout), { ok: true, format: 'pytorch', tensors: manifest.length });
  r = cli('verify', join(dir, 'zip.tensors'));
  t.equal(r.code, 0, r.stderr);
  r = cli('info', join(dir, 'zip.tensors'), '--json');
  const info = JSON.parse(r.stdout);
  t.same(info.tensors.map((x: { name: string }) => x.name), manifest.map((m: { name: string }) => m.name));
  // default output name beside a .pt input, and --key
  copyFileSync(join(fix, 'nested.pt'), join(dir, 'nested.pt'));
  r = cli('serialize', join(dir, 'nested.pt'), '--key', 'state_dict');
  t.equal(r.code, 0, r.stderr);
  t.ok(existsSync(join(dir, 'nested.tensors')));
  r = cli('serialize', join(dir, 'nested.pt'), '--key', 'missing', '-o', join(dir, 'x.tensors'));
  t.equal(r.code, 2, 'an unknown --key is a usage error');
  t.match(r.stderr, /no entry "missing"/);
  r = cli('serialize', join(fix, 'evil_system.pt'), '-o', join(dir, 'evil.tensors'));
  t.equal(r.code, 1);
  t.match(r.stderr, /refused global posix\.system/);
  t.notOk(existsSync(join(dir, 'evil.tensors')));
});

t.test('local commands start without loading the HTTP, S3 or input-parsing libraries', async (t) => {
  // A resolve hook reports every import of undici, the AWS SDK or zod (about 0.2 s of
  // module loading together): local loads, verifies and infos must need none of them.
  const hook = 'data:text/javascript,export async function resolve(s,c,n){if(/^(undici|@aws-sdk|zod)(\\/|$)/.test(s))process.stderr.write("HEAVY "+s+"\\n");return n(s,c)}';
  const register = `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(hook)})`;
  const f = join(VECTORS, 'dtypes_v1.tensors');
  for (const args of [['load', f, '--device', 'cpu', '-q'], ['load', f, '--mmap', '--verify', '-q'], ['verify', f, '-q'], ['info', f, '--json']]) {
    const r = spawnSync(process.execPath, ['--import', register, BIN, ...args], { encoding: 'utf8' });
    t.equal(r.status, 0, `${args[0]}: ${r.stderr}`);
    t.notMatch(r.stderr, /HEAVY/, `${args.join(' ')}: no network or input-parsing library imported`);
  }
  // The hook does see them where they are needed.
  const remote = spawnSync(process.execPath, ['--import', register, BIN, 'info', 'http://127.0.0.1:9/x.tensors', '--retries', '0'], { encoding: 'utf8' });
  t.match(remote.stderr, /HEAVY undici/, 'an http:// source loads undici');
});
