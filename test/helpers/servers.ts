/**
 * Real servers on loopback for the remote-source tests, started and stopped by the tests:
 *
 * - an HTTP server (node:http) that serves files from a directory with Range, ETag and
 *   Last-Modified, and can inject faults: reset the connection after N body bytes, answer
 *   503 a number of times, ignore Range, change the object's ETag mid-read;
 * - an S3-compatible server (@20minutes/s3rver, the maintained s3rver fork) with one bucket;
 * - nginx from Debian, where installed (.ci/run installs nginx-light);
 * - a proxy in front of any of them that fails or holds chosen requests.
 */
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';
import { createRequire } from 'node:module';

export interface Faults {
  /** Cut the next response bodies after this many bytes (then clear). */
  resetAfterBytes?: number;
  /** Answer this many requests with 503 SlowDown first. */
  unavailable?: number;
  /** Answer every request with the whole object (200), as servers without range support do. */
  ignoreRange?: boolean;
  /** Report a different ETag (and size) from the next request on: the object "changed". */
  changed?: boolean;
  /** Answer the next requests with these statuses, one each (e.g. [404] or [500, 500]). */
  statuses?: number[];
  /** Send this many body bytes of the next response, then nothing more until the server closes. */
  stallAfterBytes?: number;
  /** Close each connection after its response without saying so (a keep-alive server's idle timeout). */
  closeIdle?: boolean;
  /** Apply the one-shot faults above only to requests this accepts (e.g. by User-Agent). */
  match?: (req: IncomingMessage) => boolean;
  /** Answer every request with a redirect (302) to this base URL + the same path. */
  redirectTo?: string;
  /** With redirectTo: the X-Linked-Etag each redirect carries, by path (as Hugging Face states an LFS file's SHA-256). */
  linkedEtag?: (path: string) => string | undefined;
}

export interface HttpFixture {
  url: string;
  faults: Faults;
  requests: { range?: string; status: number; authorization?: string }[];
  close(): Promise<void>;
}

export async function startHttpServer(root: string, opts: { requireHeader?: [string, string]; tls?: { key: Buffer; cert: Buffer } } = {}): Promise<HttpFixture> {
  const faults: Faults = {};
  const requests: HttpFixture['requests'] = [];
  const held: ServerResponse[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    // The object's state applies to every request; one-shot faults only to matching ones.
    const f: Faults = !faults.match || faults.match(req) ? faults : { changed: faults.changed, ignoreRange: faults.ignoreRange };
    const done = (status: number) => requests.push({ range: req.headers.range, status, authorization: req.headers.authorization });
    if (faults.redirectTo) {
      const linked = faults.linkedEtag?.(new URL(req.url ?? '/', 'http://x').pathname);
      res.writeHead(302, { location: `${faults.redirectTo}${req.url ?? '/'}`, ...(linked ? { 'x-linked-etag': linked } : {}) }).end();
      return done(302);
    }
    const rel = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    if (opts.requireHeader && req.headers[opts.requireHeader[0]] !== opts.requireHeader[1]) {
      res.writeHead(401).end();
      return done(401);
    }
    if (f.unavailable && f.unavailable > 0) {
      f.unavailable--;
      res.writeHead(503, { 'retry-after': '0' }).end('SlowDown');
      return done(503);
    }
    const forced = f.statuses?.shift();
    if (forced !== undefined) {
      res.writeHead(forced, { 'content-type': 'application/xml' }).end(`<Error><Code>Injected${forced}</Code><Message>injected by the test</Message></Error>`);
      return done(forced);
    }
    if (f.closeIdle) res.on('finish', () => res.socket?.end());
    let data: Buffer;
    try {
      const path = join(root, rel);
      if (!statSync(path).isFile()) throw new Error('not a file');
      data = readFileSync(path);
    } catch {
      res.writeHead(404).end();
      return done(404);
    }
    const etag = `"${createHash('sha1').update(data).digest('hex')}${f.changed ? '-v2' : ''}"`;
    if (f.changed) data = Buffer.concat([data, Buffer.from('appended')]);
    const base = { etag, 'last-modified': new Date(0).toUTCString(), 'accept-ranges': f.ignoreRange ? 'none' : 'bytes' };
    if (req.headers['if-match'] && req.headers['if-match'] !== etag) {
      res.writeHead(412, base).end();
      return done(412);
    }
    let body = data;
    let status = 200;
    const headers: Record<string, string | number> = { ...base };
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m && !f.ignoreRange) {
      const a = Number(m[1]);
      const b = m[2] ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
      if (a >= data.length) {
        res.writeHead(416, { ...base, 'content-range': `bytes */${data.length}` }).end();
        return done(416);
      }
      body = data.subarray(a, b + 1);
      status = 206;
      headers['content-range'] = `bytes ${a}-${b}/${data.length}`;
    }
    headers['content-length'] = body.length;
    res.writeHead(status, headers);
    done(status);
    if (f.resetAfterBytes !== undefined && body.length > f.resetAfterBytes) {
      const n = f.resetAfterBytes;
      f.resetAfterBytes = undefined;
      res.write(body.subarray(0, n), () => res.socket?.destroy());
      return;
    }
    if (f.stallAfterBytes !== undefined && body.length > f.stallAfterBytes) {
      const n = f.stallAfterBytes;
      f.stallAfterBytes = undefined;
      res.write(body.subarray(0, n));
      held.push(res);
      return;
    }
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const server = opts.tls ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    faults,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const h of held) h.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface S3Fixture {
  endpoint: string;
  bucket: string;
  close(): Promise<void>;
}

/** s3rver on an ephemeral loopback port with bucket "b"; credentials S3RVER / S3RVER. */
export async function startS3(directory: string): Promise<S3Fixture> {
  const S3rver = createRequire(import.meta.url)('@20minutes/s3rver') as new (o: object) => { run(): Promise<AddressInfo>; close(): Promise<void> };
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: 'b' }] });
  const { port } = await server.run();
  return { endpoint: `http://127.0.0.1:${port}`, bucket: 'b', close: () => server.close() };
}

export const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

/** Put s3rver's credentials into this process's environment until the test ends. */
export function useS3Env(t: { teardown(f: () => void): void }): void {
  const saved = { ...process.env };
  Object.assign(process.env, S3_ENV);
  t.teardown(() => {
    for (const k of Object.keys(S3_ENV)) delete process.env[k];
    Object.assign(process.env, saved);
  });
}

export interface Proxy {
  endpoint: string;
  /** Method and URL of every request seen. */
  seen: string[];
  close(): Promise<void>;
}

/**
 * A loopback proxy in front of another server that can fail or hold requests: `rule` sees
 * each request and answers 'pass', a status code to send instead, 'hold' (never answered
 * until the proxy closes), or {resetAfter: n} (forwarded, but the connection is cut after
 * n bytes of the response body).
 */
export async function startProxy(target: string, rule: (method: string, url: string) => 'pass' | 'hold' | number | { resetAfter: number }): Promise<Proxy> {
  const seen: string[] = [];
  const t = new URL(target);
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const what = rule(req.method ?? 'GET', req.url ?? '/');
    if (what === 'hold') {
      req.resume();
      held.push(res);
      return;
    }
    if (typeof what === 'number') {
      req.resume();
      req.on('end', () => res.writeHead(what, { 'content-type': 'application/xml' }).end('<Error><Code>InternalError</Code><Message>injected</Message></Error>'));
      return;
    }
    const up = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent: false }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      if (what === 'pass') return r.pipe(res);
      let sent = 0;
      r.on('data', (d: Buffer) => {
        if (sent + d.length >= what.resetAfter) {
          res.write(d.subarray(0, what.resetAfter - sent), () => res.socket?.destroy());
          r.destroy();
        } else {
          res.write(d);
        }
        sent += d.length;
      });
      r.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    // A client that gives up mid-request (an aborted upload) must not leave a half-sent
    // request open upstream: the S3 server would wait for its body forever.
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const h of held) h.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface ForwardProxy {
  /** http://[user:password@]127.0.0.1:port */
  url: string;
  /** The host:port of every tunnel asked for (CONNECT), refused ones included. */
  tunnels: string[];
  close(): Promise<void>;
}

/**
 * A forward HTTP proxy on loopback, as corporate networks have: CONNECT tunnels only, with
 * Basic credentials required when `auth` is given (407 otherwise) and targets refused with
 * 403 when `deny` says so. Plain (absolute-form) requests are refused with 405, so a client
 * that does not tunnel is noticed.
 */
export async function startForwardProxy(opts: { auth?: [string, string]; deny?: (target: string) => boolean } = {}): Promise<ForwardProxy> {
  const tunnels: string[] = [];
  const server = createServer((_req, res) => res.writeHead(405).end('tunnels only'));
  const expected = opts.auth ? `Basic ${Buffer.from(`${opts.auth[0]}:${opts.auth[1]}`).toString('base64')}` : undefined;
  server.on('connect', (req: IncomingMessage, socket: import('node:net').Socket, head: Buffer) => {
    const target = req.url ?? '';
    tunnels.push(target);
    socket.on('error', () => {});
    if (expected && req.headers['proxy-authorization'] !== expected) return void socket.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="t"\r\nContent-Length: 0\r\n\r\n');
    if (opts.deny?.(target)) return void socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
    if (!m) return void socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    const up = connect(Number(m[2]), m[1]!, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('close', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const cred = opts.auth ? `${encodeURIComponent(opts.auth[0])}:${encodeURIComponent(opts.auth[1])}@` : '';
  return {
    url: `http://${cred}127.0.0.1:${port}`,
    tunnels,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));

/** nginx (Debian's) serving `root` on a free loopback port, in the foreground, all state in a temp dir. */
export async function startNginx(root: string): Promise<{ url: string; close(): Promise<void> }> {
  if (!NGINX) throw new Error('nginx is not installed');
  const probe = createNetServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as AddressInfo;
  await new Promise((r) => probe.close(r));
  const dir = mkdtempSync(join(tmpdir(), 'tensorize-nginx-'));
  const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `${k}_temp_path ${dir}/${k};`).join(' ');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log; events {}
http { access_log off; sendfile on; default_type application/octet-stream; ${temps}
  server { listen 127.0.0.1:${port}; root ${root}; } }\n`,
  );
  const child = spawn(NGINX, ['-c', join(dir, 'nginx.conf'), '-p', dir, '-e', join(dir, 'error.log')], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (up) break;
    if (i > 100 || child.exitCode !== null) throw new Error(`nginx did not start: ${readFileSync(join(dir, 'error.log'), 'utf8')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
