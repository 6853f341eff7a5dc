/**
 * HTTP(S) objects as a ByteSource: ranged GETs over a keep-alive connection pool (undici).
 *
 * - open() asks for `bytes=0-0` to learn the size, whether ranges work, and the object's
 *   validators (ETag, Last-Modified). Later reads send `If-Match` (or
 *   `If-Unmodified-Since`) and compare Content-Range totals, so an object that changes
 *   while it is being read is an error (E_FILE_CHANGED), never silently mixed bytes.
 * - A reset connection, a timeout, a 5xx, a 429 or a 503 SlowDown mid-transfer is retried
 *   with exponential backoff and resumed from the last byte received; short bodies are
 *   detected and resumed the same way, and so is a request under the low-speed limit
 *   (SpeedWatch in retry.ts: a server that trickles its answer).
 * - A server that ignores Range gets one sequential download into a temporary file (with
 *   a warning), which is then read like a local file and deleted on close().
 */
import { createWriteStream, readFileSync } from 'node:fs';
import { request as httpGet, type IncomingMessage } from 'node:http';
import { request as httpsGet } from 'node:https';
import { rootCertificates } from 'node:tls';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { TensorizeError } from '../errors.js';
import { FileSource } from './file.js';
import type { ByteSource, NetworkTarget } from './source.js';
import { connectRequest, ProxyHttpAgent, ProxyHttpsAgent, ProxyRouter, proxiesConfigured, proxyFor } from './proxy.js';
import { rangedRead, receiveBody, Retryable, retrying, SpeedWatch, type RetryOptions } from './retry.js';

export interface HttpOptions extends RetryOptions {
  /** Extra request headers (e.g. Authorization for token-protected endpoints). */
  headers?: Record<string, string>;
  /** PEM certificate authorities to trust instead of the system's (--ca-file). */
  ca?: string | Buffer;
  /** Connections kept open to the server (default 16). */
  connections?: number;
  /** Milliseconds without progress before a request is abandoned and retried (default 30000). */
  timeoutMs?: number;
  /** Called with messages for the user (the no-range fallback). */
  onWarning?: (message: string) => void;
}

/**
 * An X-Linked-Etag that is a SHA-256 (64 hex digits, quoted or not): Hugging Face's resolve
 * URLs state an LFS file's SHA-256 so, on the redirect to its CDN.
 */
function stated256(v: string | undefined): string | undefined {
  const m = /^(?:W\/)?"?([0-9a-fA-F]{64})"?$/.exec(v?.trim() ?? '');
  return m ? m[1]!.toLowerCase() : undefined;
}

export interface Validators {
  etag?: string;
  lastModified?: string;
}

const RETRY_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** `bytes a-b/total` → [a, b, total] (total -1 when `*`). */
function parseContentRange(v: string | undefined): [number, number, number] | undefined {
  const m = v && /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v.trim());
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), m[3] === '*' ? -1 : Number(m[3])];
}

function statusError(url: string, status: number, what: string): TensorizeError {
  if (status === 404) return new TensorizeError('E_NOT_FOUND', `${url}: not found (HTTP 404)`);
  if (status === 401 || status === 403) {
    return new TensorizeError('E_IO', `${url}: access denied (HTTP ${status}) ${what}`, {
      hints: ['pass credentials with --header "Authorization: Bearer <token>"'],
    });
  }
  if (status === 412) return new TensorizeError('E_FILE_CHANGED', `${url}: the object changed while it was being read (HTTP 412 on ${what})`);
  return new TensorizeError('E_IO', `${url}: HTTP ${status} ${what}`);
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * One `bytes=0-0` request: the object's size and validators when ranges work, whether they
 * do not (200), or where a redirect points.
 */
async function probeOnce(agent: Dispatcher, url: string, location: string, headers: Record<string, string>, opts: HttpOptions) {
  return SpeedWatch.run(opts, () => 0, () => ', waiting for the answer to bytes=0-0', (signal) => probeAttempt(agent, url, location, headers, opts, signal));
}

async function probeAttempt(agent: Dispatcher, url: string, location: string, headers: Record<string, string>, opts: HttpOptions, signal: AbortSignal) {
  const res = await send(agent, location, { ...headers, range: 'bytes=0-0' }, opts, signal);
  if (REDIRECTS.has(res.statusCode)) {
    await res.body.dump();
    const to = header(res.headers, 'location');
    if (!to) throw new TensorizeError('E_IO', `${url}: HTTP ${res.statusCode} without a Location`);
    return { redirect: to, linkedSha256: stated256(header(res.headers, 'x-linked-etag')) };
  }
  if (res.statusCode === 206) {
    const cr = parseContentRange(header(res.headers, 'content-range'));
    await res.body.dump();
    if (!cr || cr[2] < 0) throw new TensorizeError('E_IO', `${url}: the server answered a range request without a usable Content-Range`);
    return { ranged: true as const, size: cr[2], res };
  }
  if (res.statusCode === 416) {
    // An empty object cannot satisfy bytes=0-0.
    const cr = /\/(\d+)$/.exec(header(res.headers, 'content-range') ?? '');
    await res.body.dump();
    if (cr && Number(cr[1]) === 0) return { ranged: true as const, size: 0, res };
    throw new TensorizeError('E_IO', `${url}: HTTP 416 for bytes=0-0`);
  }
  if (res.statusCode === 200) {
    // No range support. Drop this body at once (dump() aborts a long one): undici 7 crashes
    // when a server closes the connection while an unread body holds its parser paused
    // (nodejs/undici#5360, fixed only in undici 8, which needs Node 22); node:http
    // downloads the object instead.
    await res.body.dump();
    return { ranged: false as const, size: -1, res };
  }
  await res.body.dump();
  if (RETRY_STATUS.has(res.statusCode)) throw new Retryable(`HTTP ${res.statusCode}`);
  throw statusError(url, res.statusCode, 'for the first range');
}
const MAX_REDIRECTS = 5;
/** Headers that must not follow a redirect to another origin (as curl and fetch() do). */
const CREDENTIALS = new Set(['authorization', 'cookie', 'proxy-authorization']);

export class HttpSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly agent: Dispatcher,
    private readonly opts: HttpOptions,
    private readonly validators: Validators,
    /** Where the bytes are: the URL after redirects (a CDN, a signed URL). */
    readonly location: string,
    /** The user's headers, less credentials when a redirect left the first origin. */
    private readonly headers: Record<string, string>,
    /** The SHA-256 the server states for the object (X-Linked-Etag, as Hugging Face serves LFS files). */
    readonly sha256?: string,
  ) {}

  /** Open a URL; a server without range support yields a FileSource over a downloaded copy. */
  static async open(url: string, opts: HttpOptions = {}): Promise<ByteSource> {
    checkHeaders(opts.headers ?? {});
    const base = { connections: opts.connections ?? 16, keepAliveTimeout: 30_000, connect: opts.ca ? { ca: opts.ca } : undefined };
    // Behind a proxy (see proxy.ts): per request, a CONNECT tunnel or a direct connection.
    const viaProxies = proxiesConfigured();
    if (viaProxies) proxyFor(url); // an unusable proxy setting fails here, clearly
    const agent: Dispatcher = viaProxies ? new ProxyRouter({ ...base, ca: opts.ca }) : new Agent(base);
    try {
      // Redirects are followed here, once: the ranged reads then go straight to the final URL.
      let location = url;
      let headers = { ...opts.headers };
      let probe = await retrying(`${url}: probing`, opts, () => probeOnce(agent, url, location, headers, opts));
      let sha256: string | undefined;
      for (let hops = 0; probe.redirect !== undefined; hops++) {
        const to = probe.redirect;
        sha256 ??= probe.linkedSha256;
        if (hops >= MAX_REDIRECTS) throw new TensorizeError('E_IO', `${url}: more than ${MAX_REDIRECTS} redirects`);
        let next: URL;
        try {
          next = new URL(to, location);
        } catch {
          throw new TensorizeError('E_IO', `${url}: a redirect to an invalid URL (${JSON.stringify(to)})`);
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new TensorizeError('E_IO', `${url}: a redirect to ${next.protocol} is not followed`);
        if (next.origin !== new URL(location).origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !CREDENTIALS.has(k.toLowerCase())));
        location = next.toString();
        probe = await retrying(`${url}: probing`, opts, () => probeOnce(agent, url, location, headers, opts));
      }
      const validators: Validators = {
        etag: header(probe.res.headers, 'etag'),
        lastModified: header(probe.res.headers, 'last-modified'),
      };
      sha256 ??= stated256(header(probe.res.headers, 'x-linked-etag'));
      if (probe.ranged) return new HttpSource(url, probe.size, agent, opts, validators, location, headers, sha256);
      opts.onWarning?.(`${url}: the server does not support range requests; downloading the whole object to a temporary file first`);
      const dir = await mkdtemp(join(tmpdir(), 'tensorize-http-'));
      const path = join(dir, 'object');
      try {
        await retrying(`${url}: downloading`, opts, () => downloadWhole(location, path, { ...opts, headers }));
      } catch (e) {
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
      await agent.close();
      const file = await FileSource.open(path);
      return {
        name: url,
        size: file.size,
        localPath: path,
        read: (o, l, into) => file.read(o, l, into),
        close: async () => {
          await file.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    } catch (e) {
      await agent.close();
      throw e;
    }
  }

  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return rangedRead(this, offset, length, into, this.opts, async (from, to, buf, at, signal) => {
      const h: Record<string, string> = { ...this.headers, range: `bytes=${from}-${to}` };
      if (this.validators.etag && !this.validators.etag.startsWith('W/')) h['if-match'] = this.validators.etag;
      else if (this.validators.lastModified) h['if-unmodified-since'] = this.validators.lastModified;
      const res = await send(this.agent, this.location, h, this.opts, signal);
      if (res.statusCode !== 206) {
        await res.body.dump().catch(() => {});
        if (RETRY_STATUS.has(res.statusCode)) throw new Retryable(`HTTP ${res.statusCode}`);
        throw statusError(this.name, res.statusCode, `for bytes ${from}-${to}`);
      }
      const cr = parseContentRange(header(res.headers, 'content-range'));
      const etag = header(res.headers, 'etag');
      if (!cr || cr[0] !== from || cr[1] !== to || (cr[2] >= 0 && cr[2] !== this.size) || (etag && this.validators.etag && etag !== this.validators.etag)) {
        await res.body.dump().catch(() => {});
        throw new TensorizeError(
          'E_FILE_CHANGED',
          `${this.name}: the object changed while it was being read (asked for bytes ${from}-${to} of ${this.size}, got ${header(res.headers, 'content-range') ?? 'no Content-Range'}${etag !== this.validators.etag ? `, ETag ${etag} instead of ${this.validators.etag}` : ''})`,
        );
      }
      await receiveBody(res.body, buf, at, this.name, () => res.body.destroy(), signal);
    });
  }

  async networkTarget(): Promise<NetworkTarget> {
    return {
      target: httpTarget(this.location, this.headers, this.validators, this.opts.ca),
      retry: { retries: this.opts.retries, baseDelayMs: this.opts.baseDelayMs, onRetry: this.opts.onRetry, timeoutMs: this.opts.timeoutMs, speedLimit: this.opts.speedLimit, speedTimeMs: this.opts.speedTimeMs },
    };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/**
 * The whole object into `path`, with Node's own client (see the probe in HttpSource.open),
 * under the idle timeout and the low-speed limit.
 */
async function downloadWhole(url: string, path: string, opts: HttpOptions): Promise<void> {
  let got = 0;
  let expected = -1;
  await SpeedWatch.run(opts, () => got, () => `, after ${got}${expected >= 0 ? ` of ${expected}` : ''} bytes`, async (signal) => {
    const timeout = opts.timeoutMs ?? 30_000;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const secure = url.startsWith('https:');
      const get = secure ? httpsGet : httpGet;
      const agent = proxiesConfigured() ? (secure ? new ProxyHttpsAgent({ ca: opts.ca }) : new ProxyHttpAgent()) : undefined;
      // `signal` destroys the request, and with it the response, when the limit trips.
      const req = get(url, { headers: { ...opts.headers, 'accept-encoding': 'identity' }, ca: opts.ca, timeout, signal, ...(agent ? { agent } : {}) }, resolve);
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeout / 1000} s`)));
      req.on('error', reject);
      req.end();
    }).catch((e: unknown) => {
      throw new Retryable((e as Error).message);
    });
    if (res.statusCode !== 200) {
      res.resume();
      if (RETRY_STATUS.has(res.statusCode ?? 0)) throw new Retryable(`HTTP ${res.statusCode}`);
      throw statusError(url, res.statusCode ?? 0, 'for the whole object');
    }
    expected = Number(res.headers['content-length'] ?? -1);
    res.on('data', (d: Buffer) => (got += d.length));
    res.setTimeout(timeout, () => res.destroy(new Error(`no data for ${timeout / 1000} s`)));
    try {
      await pipeline(res, createWriteStream(path));
    } catch (e) {
      throw new Retryable(`the download failed after ${got} bytes: ${(e as Error).message}`);
    }
    if (expected >= 0 && got !== expected) throw new Retryable(`short body: ${got} of ${expected} bytes`);
  });
}

/** Header names must be tokens and values must not break the request (CR, LF, NUL). */
function checkHeaders(headers: Record<string, string>): void {
  for (const [k, v] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || /[\r\n\0]/.test(v)) throw new TensorizeError('E_USAGE', `header ${JSON.stringify(k)} is not a valid HTTP header`);
  }
}

/** The certificate authorities Node trusts by default: its bundled roots plus NODE_EXTRA_CA_CERTS. */
function defaultCAs(): string {
  let extra = '';
  const f = process.env.NODE_EXTRA_CA_CERTS;
  if (f) {
    try {
      extra = readFileSync(f, 'utf8');
    } catch {
      // Node itself only warns about an unreadable file.
    }
  }
  return [...rootCertificates, extra].join('\n');
}

/**
 * The ranged GETs for `url` as the native fetcher sends them: request line, Host, the
 * user's headers, and If-Match (or If-Unmodified-Since) so a replaced object is refused.
 */
export function httpTarget(url: string, headers: Record<string, string>, validators: Validators, ca?: string | Buffer): NetworkTarget['target'] {
  const u = new URL(url);
  const tls = u.protocol === 'https:';
  const lines: [string, string][] = [
    ['Host', u.host],
    ['User-Agent', 'tensorize'],
    ['Accept-Encoding', 'identity'],
  ];
  const strong = validators.etag && !validators.etag.startsWith('W/') ? validators.etag : undefined;
  if (strong) lines.push(['If-Match', strong]);
  else if (validators.lastModified) lines.push(['If-Unmodified-Since', validators.lastModified]);
  checkHeaders(headers);
  for (const [k, v] of Object.entries(headers)) {
    const lk = k.toLowerCase();
    if (lk === 'range' || lk === 'content-length' || lk === 'transfer-encoding' || lk === 'connection') continue;
    const i = lines.findIndex(([n]) => n.toLowerCase() === lk);
    if (i >= 0) lines.splice(i, 1);
    lines.push([k, v]);
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = u.port ? Number(u.port) : tls ? 443 : 80;
  const proxy = proxyFor(u);
  return {
    host,
    port,
    ...(proxy ? { proxyHost: proxy.host, proxyPort: proxy.port, proxyConnect: connectRequest(host, port, proxy) } : {}),
    tls,
    ca: tls ? (ca !== undefined ? String(ca) : defaultCAs()) : undefined,
    head: `GET ${u.pathname}${u.search} HTTP/1.1\r\n${lines.map(([k, v]) => `${k}: ${v}\r\n`).join('')}`,
    etag: strong,
  };
}

async function send(agent: Dispatcher, url: string, headers: Record<string, string>, opts: HttpOptions, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
  const timeout = opts.timeoutMs ?? 30_000;
  try {
    return await request(url, { dispatcher: agent, method: 'GET', headers, headersTimeout: timeout, bodyTimeout: timeout, signal });
  } catch (e) {
    if (e instanceof TensorizeError || e instanceof Retryable) throw e; // an unusable proxy setting (from the router), the low-speed limit
    const code = (e as { code?: string }).code ?? '';
    const refused = /^Proxy response \((\d+)\)/.exec((e as Error).message ?? '');
    if (refused) {
      const status = Number(refused[1]);
      const proxy = proxyFor(url);
      const err = new TensorizeError('E_IO', `${url}: the proxy ${proxy?.display ?? ''} refused a tunnel (HTTP ${status})${status === 407 ? ': proxy authentication required' : ''}`, {
        hints: status === 407 ? ['put the user and password in the proxy URL: HTTPS_PROXY=http://user:password@proxy:port'] : ['check the proxy, or list this host in NO_PROXY'],
        cause: e,
      });
      if (status >= 500) throw new Retryable(err.message);
      throw err;
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new TensorizeError('E_IO', `${url}: cannot resolve the host name (${code})`, { cause: e });
    if (/CERT|SSL|TLS/i.test(code) || /certificate/i.test((e as Error).message)) {
      throw new TensorizeError('E_IO', `${url}: TLS error: ${(e as Error).message}`, { hints: ['pass the server\'s CA with --ca-file'], cause: e });
    }
    if (e instanceof TypeError || code === 'ERR_INVALID_URL') throw new TensorizeError('E_USAGE', `${url}: not a valid URL (${(e as Error).message})`, { cause: e });
    throw new Retryable(`${code || (e as Error).message}`);
  }
}
