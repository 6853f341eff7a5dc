/**
 * HTTP proxies from the environment, as curl and undici read them: `https_proxy` /
 * `HTTPS_PROXY` for https:// URLs, `http_proxy` / `HTTP_PROXY` for http:// (and for
 * https:// when no https proxy is set), `no_proxy` / `NO_PROXY` for the hosts to reach
 * directly (comma- or space-separated names, each matching itself and its subdomains, a
 * leading `.` or `*.` ignored, an optional `:port`; `*` for every host). Lower-case names
 * win, as in undici. Every client here goes through the proxy the same way: a CONNECT
 * tunnel to the target (undici's ProxyAgent, the native fetcher, the AWS SDK's sockets and
 * the no-range download), with `Proxy-Authorization: Basic` from the proxy URL's user and
 * password. Only http:// proxies are supported.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { Agent, Dispatcher, ProxyAgent } from 'undici';
import { TensorizeError } from '../errors.js';

export interface ProxyConfig {
  /** The proxy URL with its credentials removed, for messages. */
  display: string;
  host: string;
  port: number;
  /** `Basic ...` when the proxy URL carries a user (and password). */
  authorization?: string;
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

function envProxy(protocol: string, env: NodeJS.ProcessEnv): string | undefined {
  const httpProxy = env.http_proxy ?? env.HTTP_PROXY;
  if (protocol === 'https:') return env.https_proxy ?? env.HTTPS_PROXY ?? httpProxy;
  return httpProxy;
}

/** Whether NO_PROXY sends `hostname:port` directly (undici's rules, plus bare and bracketed IPv6). */
export function bypassesProxy(hostname: string, port: number, noProxy: string): boolean {
  if (noProxy.trim() === '*') return true;
  const host = hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  for (const raw of noProxy.split(/[,\s]/)) {
    if (!raw) continue;
    // host, host:port, [v6], [v6]:port, or a bare IPv6 address (two or more colons, no port)
    const m = raw.startsWith('[') ? /^\[([^\]]*)\](?::(\d+))?$/.exec(raw) : (raw.match(/:/g)?.length ?? 0) > 1 ? [raw, raw, undefined] : /^(.+?)(?::(\d+))?$/.exec(raw);
    if (!m) continue;
    const name = m[1]!.replace(/^\*?\./, '').toLowerCase();
    if (m[2] !== undefined && Number(m[2]) !== port) continue;
    if (host === name || host.endsWith(`.${name}`)) return true;
  }
  return false;
}

/** The proxy for a request to `url`, or undefined to connect directly. */
export function proxyFor(url: string | URL, env: NodeJS.ProcessEnv = process.env): ProxyConfig | undefined {
  const u = typeof url === 'string' ? new URL(url) : url;
  const raw = envProxy(u.protocol, env);
  if (!raw) return undefined;
  const port = Number(u.port) || DEFAULT_PORTS[u.protocol] || 0;
  if (bypassesProxy(u.hostname, port, env.no_proxy ?? env.NO_PROXY ?? '')) return undefined;
  let p: URL;
  try {
    p = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new TensorizeError('E_USAGE', `the proxy ${JSON.stringify(raw)} (from the environment) is not a valid URL`);
  }
  if (p.protocol !== 'http:') throw new TensorizeError('E_UNSUPPORTED', `${p.protocol}// proxies are not supported (${p.host}); use an http:// proxy URL`);
  const user = decodeURIComponent(p.username);
  const authorization = user || p.password ? `Basic ${Buffer.from(`${user}:${decodeURIComponent(p.password)}`).toString('base64')}` : undefined;
  return { display: `http://${p.host}`, host: p.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(p.port) || 80, authorization };
}

/** Whether any proxy variable is set (then clients route per request). */
export function proxiesConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return !!(envProxy('http:', env) || envProxy('https:', env));
}

/** The CONNECT request that opens a tunnel to host:port through `proxy`. */
export function connectRequest(host: string, port: number, proxy: ProxyConfig): string {
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${proxy.authorization ? `Proxy-Authorization: ${proxy.authorization}\r\n` : ''}\r\n`;
}

/** Open a CONNECT tunnel; resolves to the raw socket once the proxy answered 2xx. */
export function openTunnel(proxy: ProxyConfig, host: string, port: number, timeoutMs = 30_000): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const req = http.request({
      host: proxy.host,
      port: proxy.port,
      method: 'CONNECT',
      path: target,
      headers: { host: target, ...(proxy.authorization ? { 'proxy-authorization': proxy.authorization } : {}) },
      timeout: timeoutMs,
      agent: false,
    });
    req.once('connect', (res, socket) => {
      if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) resolve(socket);
      else {
        socket.destroy();
        reject(new TensorizeError('E_IO', `the proxy ${proxy.display} refused a tunnel to ${target} (HTTP ${res.statusCode}${res.statusCode === 407 ? ': proxy authentication required; put the user and password in the proxy URL' : ''})`));
      }
    });
    req.once('timeout', () => req.destroy(new Error(`the proxy ${proxy.display} did not answer within ${timeoutMs / 1000} s`)));
    req.once('error', (e) => reject(e instanceof TensorizeError ? e : new TensorizeError('E_IO', `cannot reach the proxy ${proxy.display}: ${e.message}`, { cause: e })));
    req.end();
  });
}

type ConnectCallback = (err: Error | null, socket?: Duplex) => void;
type ConnectOptions = { host?: string | null; hostname?: string | null; port?: number | string | null; servername?: string };
type DirectConnect = (this: unknown, options: ConnectOptions, cb: ConnectCallback) => Duplex;

/** Node agents whose connections go through a CONNECT tunnel when the environment says so. */
function tunnelled<T extends typeof http.Agent | typeof https.Agent>(Base: T, secure: boolean): T {
  return class extends Base {
    createConnection(options: ConnectOptions, cb: ConnectCallback): Duplex | undefined {
      const host = (options.hostname ?? options.host ?? 'localhost').replace(/^\[(.*)\]$/, '$1');
      const port = Number(options.port) || (secure ? 443 : 80);
      const proxy = proxyFor(`${secure ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}/`);
      if (!proxy) return (Base.prototype as unknown as { createConnection: DirectConnect }).createConnection.call(this, options, cb);
      openTunnel(proxy, host, port).then(
        (socket) => cb(null, secure ? tls.connect({ ...(options as tls.ConnectionOptions), socket, servername: options.servername ?? (tlsServername(host)) }) : socket),
        (e: Error) => cb(e),
      );
      return undefined;
    }
  };
}

function tlsServername(host: string): string | undefined {
  return /^[0-9.]+$/.test(host) || host.includes(':') ? undefined : host;
}

/**
 * An undici dispatcher that routes each request with proxyFor(), the same decision the
 * native fetcher and the Node agents make: directly, or through a ProxyAgent (CONNECT
 * tunnel, credentials as computed here) per proxy. undici's own EnvHttpProxyAgent reads
 * the environment by other rules (no scheme-less proxies, other fallbacks for empty
 * variables, other NO_PROXY parsing), so it is not used.
 */
export class ProxyRouter extends Dispatcher {
  private readonly direct: Agent;
  private readonly viaProxy = new Map<string, ProxyAgent>();
  constructor(private readonly opts: Agent.Options & { ca?: string | Buffer }) {
    super();
    this.direct = new Agent(opts);
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const proxy = proxyFor(String(options.origin));
    if (!proxy) return this.direct.dispatch(options, handler);
    const key = `${proxy.host}|${proxy.port}|${proxy.authorization ?? ''}`;
    let agent = this.viaProxy.get(key);
    if (!agent) {
      const { ca, ...rest } = this.opts;
      agent = new ProxyAgent({
        ...rest,
        uri: `http://${proxy.host.includes(':') ? `[${proxy.host}]` : proxy.host}:${proxy.port}`,
        token: proxy.authorization,
        requestTls: ca ? { ca } : undefined,
      });
      this.viaProxy.set(key, agent);
    }
    return agent.dispatch(options, handler);
  }

  private all(f: (d: Dispatcher) => Promise<void>): Promise<void> {
    return Promise.all([f(this.direct), ...[...this.viaProxy.values()].map(f)]).then(() => undefined);
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    const p = this.all((d) => d.close());
    if (!callback) return p;
    void p.then(callback, callback);
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const err = typeof a === 'function' ? null : (a ?? null);
    const callback = typeof a === 'function' ? a : b;
    const p = this.all((d) => d.destroy(err));
    if (!callback) return p;
    void p.then(callback, callback);
  }
}

/** An http.Agent that tunnels through the environment's proxy where it applies. */
export const ProxyHttpAgent = tunnelled(http.Agent, false);
/** An https.Agent that tunnels through the environment's proxy where it applies. */
export const ProxyHttpsAgent = tunnelled(https.Agent, true);
