/**
 * The low-speed limit (--speed-limit, --speed-time; issue #12): a server that trickles its
 * answers must not keep verify, load, export or info running forever. Against a raw server
 * on loopback that sends correct heads and then paces the body, through the CLI, with the
 * native fetcher and with TENSORIZE_NET=js (undici), the no-range download (node:http) and
 * the index reads: a trickle is retried, then ends with exit 1 and an error that says the
 * transfer was too slow and names the URL; a retry that is fast completes; a slow server
 * above the limit completes; Ctrl-C still stops a trickle. No assertion here depends on how
 * fast this machine is: the limits are far from the paces served.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TensorType } from '../src/format/constants.js';
import { TensorizerFile } from '../src/format/reader.js';
import { writeTensorizer } from '../src/ops/serialize.js';
import { openInput } from '../src/inputs/index.js';
import { nativeAvailable } from '../src/native/binding.js';
import { FileSource } from '../src/sources/file.js';
import { makeS3Client } from '../src/sources/s3.js';
import { startS3, S3_ENV } from './helpers/servers.js';
import { BIN, bytes, writeSafetensors } from './helpers/util.js';

const dir = mkdtempSync(join(tmpdir(), 'tensorize-speed-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A small .tensors file: three 96 KiB tensors, read by the data phase in one request (and
 * large enough that the tensor headers are read one by one, not with the data between them).
 */
async function makeFile(): Promise<{ file: Buffer; dataStart: number }> {
  writeSafetensors(
    join(dir, 'm.safetensors'),
    [0, 1, 2].map((k) => ({ name: `layer${k}.weight`, dtype: 'U8', shape: [98304], data: bytes(98304, k + 1) })),
  );
  const model = await openInput(join(dir, 'm.safetensors'));
  await writeTensorizer(join(dir, 'm.tensors'), model.tensors.map((x) => ({ ...x, type: TensorType.STATE_DICT })));
  const tf = await TensorizerFile.open(await FileSource.open(join(dir, 'm.tensors')));
  const dataStart = Math.min(...tf.entries.map((e) => e.headerOffset));
  await tf.source.close();
  return { file: readFileSync(join(dir, 'm.tensors')), dataStart };
}

interface Seen {
  range?: [number, number];
  paced: boolean;
}
/** How to send one answer's body: `bytes` every `everyMs` (undefined: at once). */
type Pace = { bytes: number; everyMs: number } | undefined;

/**
 * A raw HTTP/1.1 server over `file` with keep-alive: a ranged GET gets a correct 206 head
 * (a request without Range, or any request with `noRange`, the whole object with 200) and
 * then its body, at once or at the pace `pace` picks for it.
 */
async function pacedServer(file: Buffer, pace: (q: { range?: [number, number]; head: string; n: number }) => Pace, opts: { noRange?: boolean } = {}) {
  const socks = new Set<Socket>();
  const seen: Seen[] = [];
  const server = createServer((sock) => {
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    let busy = false;
    const heads: string[] = [];
    const next = async () => {
      if (busy) return;
      busy = true;
      for (let head; (head = heads.shift()) !== undefined && !sock.destroyed; ) {
        const m = /\r\nrange: bytes=(\d+)-(\d+)/i.exec(head);
        const range: [number, number] | undefined = m && !opts.noRange ? [Number(m[1]), Number(m[2])] : undefined;
        const p = pace({ range, head, n: seen.length });
        seen.push({ range, paced: !!p });
        const body = range ? file.subarray(range[0], range[1] + 1) : file;
        sock.write(
          range
            ? `HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length}\r\nContent-Range: bytes ${range[0]}-${range[1]}/${file.length}\r\nETag: "e"\r\n\r\n`
            : `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nETag: "e"\r\n\r\n`,
        );
        if (!p) {
          sock.write(body);
          continue;
        }
        for (let i = 0; i < body.length && !sock.destroyed; i += p.bytes) {
          sock.write(body.subarray(i, i + p.bytes));
          await new Promise((r) => setTimeout(r, p.everyMs));
        }
      }
      busy = false;
    };
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (let i; (i = buf.indexOf('\r\n\r\n')) >= 0; ) {
        heads.push(buf.slice(0, i + 2));
        buf = buf.slice(i + 4);
      }
      void next();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/m.tensors`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        server.close(() => r());
      }),
  };
}

/** The CLI, killed after two minutes (a hang guard only: every run here takes seconds). */
function cli(args: string[], env: Record<string, string> = {}, onSpawn?: (kill: () => void) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 120_000, killSignal: 'SIGKILL' });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  onSpawn?.(() => child.kill('SIGINT'));
  return new Promise((r) => child.on('close', (code) => r({ code, stdout, stderr })));
}

const ENGINES: [string, Record<string, string>][] = [
  ...(nativeAvailable() ? [['native', {}] as [string, Record<string, string>]] : []),
  ['js', { TENSORIZE_NET: 'js' }],
];
const COMMANDS: [string, (out: string) => string[]][] = [
  ['verify', () => []],
  ['load', () => ['--device', 'cpu']],
  ['export', (out) => ['-o', out]],
];
const TRICKLE = { bytes: 1, everyMs: 200 };
const STRICT = ['--speed-limit', '64KiB', '--speed-time', '1', '--retries', '1'];

t.test('a server that trickles the tensor data: verify, load and export give up as too slow, with both engines', async (t) => {
  const { file, dataStart } = await makeFile();
  // Every request for the tensor data (not the probe, the index or the tensor headers) trickles.
  const srv = await pacedServer(file, ({ range }) => (range && range[0] >= dataStart && range[1] - range[0] > 1024 ? TRICKLE : undefined));
  t.teardown(() => srv.close());
  for (const [engine, env] of ENGINES) {
    for (const [cmd, extra] of COMMANDS) {
      const out = join(dir, `trickle-${engine}.safetensors`);
      const before = srv.seen.filter((q) => q.paced).length;
      const r = await cli([cmd, srv.url, ...extra(out), ...STRICT], env);
      const what = `${cmd} (${engine})`;
      t.equal(r.code, 1, `${what}: exit 1`);
      t.match(r.stderr, /too slow: under 65536 bytes\/s for 1 s \(\d+ bytes in [\d.]+ s\), after \d+ of \d+ bytes/, `${what}: the error says the transfer was too slow`);
      t.ok(r.stderr.includes(srv.url), `${what}: the error names the URL`);
      t.match(r.stderr, /giving up after 2 attempts/, `${what}: after the retry`);
      t.match(r.stderr, /--speed-limit/, `${what}: the hint names the option`);
      t.equal(srv.seen.filter((q) => q.paced).length - before, 2, `${what}: the trickling request was tried twice`);
      if (cmd === 'export') t.notOk(existsSync(out), `${what}: no output file is left behind`);
    }
  }
});

t.test('a trickling index read (info, through the JavaScript client) and a trickling no-range download give up as too slow', async (t) => {
  const { file } = await makeFile();
  // Everything but the bytes=0-0 probe trickles: the first index read is the one that fails.
  const srv = await pacedServer(file, ({ range }) => (range && range[1] > 0 ? TRICKLE : undefined));
  t.teardown(() => srv.close());
  for (const cmd of ['info', 'verify']) {
    const r = await cli([cmd, srv.url, ...STRICT]);
    t.equal(r.code, 1, `${cmd}: exit 1`);
    t.match(r.stderr, new RegExp(`${srv.url.replace(/[.]/g, '\\.')}: bytes \\d+\\.\\.\\d+: giving up after 2 attempts: too slow: under 65536 bytes/s for 1 s`), `${cmd}: too slow, with the URL and range`);
  }
  // A server without range support: the probe is answered at once, the download (node:http, no Range) trickles.
  const whole = await pacedServer(file, ({ head }) => (/\r\nrange:/i.test(head) ? undefined : TRICKLE), { noRange: true });
  t.teardown(() => whole.close());
  const r = await cli(['verify', whole.url, ...STRICT]);
  t.equal(r.code, 1, 'no-range download: exit 1');
  t.match(r.stderr, /does not support range requests/, 'the fallback was taken');
  t.ok(r.stderr.includes(`${whole.url}: downloading: giving up after 2 attempts: too slow: under 65536 bytes/s for 1 s`), `no-range download: too slow, with the URL (${r.stderr})`);
  t.equal(whole.seen.filter((q) => q.paced).length, 2, 'the download was tried twice');
});

t.test('a slow server above the limit completes; a trickle that a retry outruns completes', async (t) => {
  const { file, dataStart } = await makeFile();
  const isData = (range?: [number, number]) => !!range && range[0] >= dataStart && range[1] - range[0] > 1024;
  // 4 KiB every 100 ms (about 40 KiB/s, for some 2.4 s) against a limit of 4 KiB/s.
  const slow = await pacedServer(file, ({ range }) => (isData(range) ? { bytes: 4096, everyMs: 100 } : undefined));
  t.teardown(() => slow.close());
  for (const [engine, env] of ENGINES) {
    for (const [cmd, extra] of COMMANDS) {
      const out = join(dir, `slow-${engine}.safetensors`);
      const before = slow.seen.filter((q) => q.paced).length;
      const r = await cli([cmd, slow.url, ...extra(out), '--speed-limit', '4KiB', '--speed-time', '1', '--retries', '0'], env);
      t.equal(r.code, 0, `${cmd} (${engine}) at about 40 KiB/s with a 4 KiB/s limit: completes (${r.stderr})`);
      t.equal(slow.seen.filter((q) => q.paced).length - before, 1, `${cmd} (${engine}): the data came paced, in one request`);
      if (cmd === 'export') t.ok(existsSync(out), `${cmd} (${engine}): the output was written`);
      rmSync(out, { force: true });
    }
  }
  // The first data request trickles, the retry is fast.
  let trickled = 0;
  const once = await pacedServer(file, ({ range }) => (isData(range) && trickled++ === 0 ? TRICKLE : undefined));
  t.teardown(() => once.close());
  for (const [engine, env] of ENGINES) {
    trickled = 0;
    const r = await cli(['verify', once.url, '--speed-limit', '4KiB', '--speed-time', '1', '--retries', '1', '--verbose'], env);
    t.equal(r.code, 0, `verify (${engine}): the retry completes (${r.stderr})`);
    t.match(r.stderr, /retry: .*too slow: under 4096 bytes\/s for 1 s.*; retry 1 of 1/, `verify (${engine}): the retry was for the low speed`);
    t.match(r.stdout + r.stderr, /OK /, `verify (${engine}): the file verifies`);
  }
});

t.test('S3: a trickling GetObject (the SDK, index reads) and a trickling presigned range (the native fetcher) give up as too slow', async (t) => {
  const { file, dataStart } = await makeFile();
  const s3 = await startS3(join(dir, 's3'));
  t.teardown(() => s3.close());
  Object.assign(process.env, S3_ENV);
  t.teardown(() => {
    for (const k of Object.keys(S3_ENV)) delete process.env[k];
  });
  const { client } = makeS3Client({ endpoint: s3.endpoint });
  await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'm.tensors', Body: file }));
  client.destroy();
  // In front of s3rver: ranged GETs that `trickle` picks get their body one byte every 200 ms.
  let trickle = (_range: [number, number]) => false;
  let paced = 0;
  const up = new URL(s3.endpoint);
  const proxy = createHttpServer((req, res) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    const slow = req.method === 'GET' && !!m && trickle([Number(m[1]), Number(m[2])]);
    const fwd = httpRequest({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, async (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      if (!slow) return void r.pipe(res);
      paced++;
      const chunks: Buffer[] = [];
      for await (const c of r) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      for (let i = 0; i < body.length && !res.destroyed; i++) {
        res.write(body.subarray(i, i + 1));
        await new Promise((w) => setTimeout(w, 200));
      }
      res.end();
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    proxy.closeAllConnections();
    proxy.close();
  });
  const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  trickle = () => true;
  let r = await cli(['info', 's3://b/m.tensors', '--endpoint', endpoint, ...STRICT], S3_ENV);
  t.equal(r.code, 1, 'info: exit 1');
  t.match(r.stderr, /s3:\/\/b\/m\.tensors: bytes \d+\.\.\d+: giving up after 2 attempts: too slow: under 65536 bytes\/s for 1 s/, `info: too slow, with the URL (${r.stderr})`);
  t.equal(paced, 2, 'info: the index read was tried twice');
  if (nativeAvailable()) {
    paced = 0;
    trickle = (range) => range[0] >= dataStart && range[1] - range[0] > 1024;
    r = await cli(['verify', 's3://b/m.tensors', '--endpoint', endpoint, ...STRICT], S3_ENV);
    t.equal(r.code, 1, 'verify (native, presigned URL): exit 1');
    t.match(r.stderr, /s3:\/\/b\/m\.tensors: bytes \d+\.\.\d+: giving up after 2 attempts: too slow: under 65536 bytes\/s for 1 s/, `verify: too slow, with the URL (${r.stderr})`);
    t.equal(paced, 2, 'verify: the data request was tried twice');
  }
});

t.test('Ctrl-C stops a trickle at once, with the limit off', async (t) => {
  const { file, dataStart } = await makeFile();
  const srv = await pacedServer(file, ({ range }) => (range && range[0] >= dataStart && range[1] - range[0] > 1024 ? TRICKLE : undefined));
  t.teardown(() => srv.close());
  for (const [engine, env] of ENGINES) {
    const before = srv.seen.length;
    const r = await cli(['load', srv.url, '--device', 'cpu', '--speed-limit', '0'], env, (kill) => {
      const poll = setInterval(() => {
        if (srv.seen.slice(before).some((q) => q.paced)) {
          clearInterval(poll);
          setTimeout(kill, 300);
        }
      }, 20);
    });
    t.equal(r.code, 130, `load (${engine}): interrupted (${r.stderr})`);
  }
});

t.test('--speed-limit and --speed-time are checked', async (t) => {
  for (const bad of [['--speed-limit', 'fast'], ['--speed-limit', '-1'], ['--speed-time', '0'], ['--speed-time', 'x']]) {
    const r = await cli(['verify', 'http://127.0.0.1:9/m.tensors', ...bad]);
    t.equal(r.code, 2, `${bad.join(' ')}: a usage error`);
  }
  const help = await cli(['load', '--help']);
  t.match(help.stdout, /--speed-limit <bytes\/s>/);
  t.match(help.stdout, /--speed-time <seconds>/);
  const ser = await cli(['serialize', '--help']);
  t.match(ser.stdout, /--speed-limit <bytes\/s>/);
});
