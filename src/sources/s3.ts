/**
 * S3 objects as a ByteSource, configured the way users already have it:
 *
 * - credentials, region and endpoint from the AWS SDK chain (environment, AWS_PROFILE,
 *   ~/.aws/config and credentials, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL);
 * - or from s3cmd's ~/.s3cfg (or $S3CFG), which tensorizer users rely on, when the
 *   environment names no AWS credentials or profile;
 * - flags: --endpoint, --region, --path-style, --anonymous (public buckets, unsigned).
 *
 * With a custom endpoint (MinIO, Ceph, R2, s3rver, ...) path-style addressing, checksum
 * mode WHEN_REQUIRED (the SDK's default checksums break such servers) and region us-east-1
 * are the defaults. Reads are HeadObject once, then ranged GetObject with If-Match on the
 * ETag; retries (our own, the SDK's are off) resume from the last byte received, and each
 * request runs under the low-speed limit (SpeedWatch in retry.ts).
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { TensorizeError } from '../errors.js';
import type { ByteSource, NetworkTarget } from './source.js';
import { httpTarget } from './http.js';
import { ProxyHttpAgent, ProxyHttpsAgent, proxiesConfigured } from './proxy.js';
import { rangedRead, receiveBody, Retryable, retrying, SpeedWatch, type RetryOptions } from './retry.js';

export interface S3Options extends RetryOptions {
  endpoint?: string;
  region?: string;
  /** Path-style addressing (default: on for custom endpoints, off for AWS). */
  pathStyle?: boolean;
  /** Unsigned requests, for public buckets. */
  anonymous?: boolean;
  /** Connections kept open (default 16). */
  connections?: number;
  /** PEM certificate authorities to trust for an https:// endpoint (--ca-file; default: $AWS_CA_BUNDLE, else the system's). */
  ca?: string | Buffer;
}

export function parseS3Url(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.+)$/i.exec(url);
  if (!m) throw new TensorizeError('E_USAGE', `${url}: an S3 location looks like s3://bucket/key`);
  return { bucket: m[1]!, key: m[2]! };
}

/** A tiny INI reader for ~/.s3cfg and ~/.aws/config: section → key → value. */
function readIni(path: string): Map<string, Map<string, string>> | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const out = new Map<string, Map<string, string>>();
  let section = new Map<string, string>();
  out.set('', section);
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = new Map();
      out.set(sec[1]!.trim(), section);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq > 0) section.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  return out;
}

export interface S3cfg {
  path: string;
  accessKey?: string;
  secretKey?: string;
  endpoint?: string;
  region?: string;
}

/** The [default] section of s3cmd's config ($S3CFG or ~/.s3cfg), if there is one. */
export function readS3cfg(path = process.env.S3CFG ?? join(homedir(), '.s3cfg')): S3cfg | undefined {
  const d = readIni(path)?.get('default');
  if (!d) return undefined;
  const host = d.get('host_base');
  const https = !/^(false|no|0|off)$/i.test(d.get('use_https') ?? 'true');
  const region = d.get('bucket_location');
  return {
    path,
    accessKey: d.get('access_key') || undefined,
    secretKey: d.get('secret_key') || undefined,
    endpoint: host && host !== 's3.amazonaws.com' ? `${https ? 'https' : 'http'}://${host}` : undefined,
    region: region && region !== 'US' ? region : undefined,
  };
}

function profileRegion(): string | undefined {
  const profile = process.env.AWS_PROFILE ?? 'default';
  const ini = readIni(process.env.AWS_CONFIG_FILE ?? join(homedir(), '.aws', 'config'));
  return ini?.get(profile === 'default' ? 'default' : `profile ${profile}`)?.get('region');
}

/** The S3 client for these options and the environment (see the module comment). */
export function makeS3Client(opts: S3Options = {}): { client: S3Client; endpoint?: string; from: string } {
  const env = process.env;
  // The SDK warns on Node 20 that releases after January 2027 will need Node 22; the pinned
  // release works, and the warning would only clutter every command's output.
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const useS3cfg = !env.AWS_ACCESS_KEY_ID && !env.AWS_PROFILE && !opts.anonymous;
  const cfg = useS3cfg ? readS3cfg() : undefined;
  const endpoint = opts.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? cfg?.endpoint;
  const region = opts.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? cfg?.region ?? profileRegion() ?? 'us-east-1';
  const ca = s3CA(opts);
  const config: S3ClientConfig = {
    region,
    maxAttempts: 1, // retries are ours: they resume mid-body
    requestHandler: proxiesConfigured()
      ? { httpsAgent: new ProxyHttpsAgent({ maxSockets: opts.connections ?? 16, keepAlive: true, ...(ca ? { ca } : {}) }), httpAgent: new ProxyHttpAgent({ maxSockets: opts.connections ?? 16, keepAlive: true }) }
      : { httpsAgent: { maxSockets: opts.connections ?? 16, keepAlive: true, ...(ca ? { ca } : {}) }, httpAgent: { maxSockets: opts.connections ?? 16, keepAlive: true } },
  };
  if (endpoint) {
    config.endpoint = endpoint;
    config.forcePathStyle = opts.pathStyle ?? true;
    config.requestChecksumCalculation = 'WHEN_REQUIRED';
    config.responseChecksumValidation = 'WHEN_REQUIRED';
  } else if (opts.pathStyle !== undefined) {
    config.forcePathStyle = opts.pathStyle;
  }
  let from = 'the AWS SDK chain';
  if (opts.anonymous) {
    config.credentials = { accessKeyId: '', secretAccessKey: '' };
    config.signer = { sign: async (request) => request };
    from = 'anonymous';
  } else if (cfg?.accessKey && cfg.secretKey) {
    config.credentials = { accessKeyId: cfg.accessKey, secretAccessKey: cfg.secretKey };
    from = cfg.path;
  }
  return { client: new S3Client(config), endpoint, from };
}

/** The CA bundle for https endpoints: --ca-file, else $AWS_CA_BUNDLE (as the AWS CLI reads it). */
export function s3CA(opts: S3Options): string | Buffer | undefined {
  if (opts.ca !== undefined) return opts.ca;
  const f = process.env.AWS_CA_BUNDLE;
  if (!f) return undefined;
  try {
    return readFileSync(f);
  } catch (e) {
    throw new TensorizeError('E_USAGE', `AWS_CA_BUNDLE=${f}: ${(e as Error).message}`);
  }
}

const RETRY_NAMES = new Set(['SlowDown', 'RequestTimeout', 'InternalError', 'ServiceUnavailable', 'Throttling', 'ThrottlingException', 'TimeoutError']);

/** An SDK failure as a TensorizeError (fatal) or a Retryable. */
export function classifyS3Error(url: string, e: unknown, what: string, from: string): Error {
  const err = e as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = err.$metadata?.httpStatusCode;
  if (status === 412 || err.name === 'PreconditionFailed') return new TensorizeError('E_FILE_CHANGED', `${url}: the object changed while it was being read (${what})`);
  if (status === 404 || err.name === 'NoSuchKey' || err.name === 'NotFound' || err.name === 'NoSuchBucket') return new TensorizeError('E_NOT_FOUND', `${url}: no such object${err.name === 'NoSuchBucket' ? ' (no such bucket)' : ''}`);
  if (status === 401 || status === 403 || err.name === 'AccessDenied' || err.name === 'InvalidAccessKeyId' || err.name === 'SignatureDoesNotMatch') {
    return new TensorizeError('E_IO', `${url}: access denied (${err.name ?? status}) with credentials from ${from}`, {
      hints: ['set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or ~/.s3cfg; --anonymous for public buckets', 'for a non-AWS server pass --endpoint URL (or AWS_ENDPOINT_URL_S3)'],
    });
  }
  if ((status !== undefined && status >= 500) || status === 429 || RETRY_NAMES.has(err.name ?? '') || /ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|socket hang up/i.test(`${err.code} ${err.message}`)) {
    return new Retryable(`${err.name ?? 'error'}${status ? ` (HTTP ${status})` : ''}: ${err.message}`);
  }
  if (err.name === 'CredentialsProviderError') {
    return new TensorizeError('E_IO', `${url}: no AWS credentials found: ${err.message}`, { hints: ['set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or ~/.s3cfg; --anonymous for public buckets'] });
  }
  return new TensorizeError('E_IO', `${url}: ${what} failed: ${err.name ?? ''} ${err.message ?? String(e)}`, { cause: e });
}

export class S3Source implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly client: S3Client,
    private readonly loc: { bucket: string; key: string },
    private readonly etag: string | undefined,
    private readonly opts: S3Options,
    private readonly from: string,
    private readonly anonymous: boolean,
  ) {}

  static async open(url: string, opts: S3Options = {}): Promise<S3Source> {
    const loc = parseS3Url(url);
    const { client, from } = makeS3Client(opts);
    const anonymous = !!opts.anonymous;
    try {
      const head = await retrying(`${url}: HeadObject`, opts, () =>
        SpeedWatch.run(opts, () => 0, () => ', waiting for the answer to HeadObject', async (abortSignal) => {
          try {
            return await client.send(new HeadObjectCommand({ Bucket: loc.bucket, Key: loc.key }), { abortSignal });
          } catch (e) {
            throw classifyS3Error(url, e, 'HeadObject', from);
          }
        }),
      );
      if (head.ContentLength === undefined) throw new TensorizeError('E_IO', `${url}: HeadObject gave no Content-Length`);
      return new S3Source(url, head.ContentLength, client, loc, head.ETag, opts, from, anonymous);
    } catch (e) {
      client.destroy();
      throw e;
    }
  }

  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return rangedRead(this, offset, length, into, this.opts, async (from, to, buf, at, abortSignal) => {
      let body: AsyncIterable<Uint8Array> & { destroy?: () => void };
      try {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.loc.bucket, Key: this.loc.key, Range: `bytes=${from}-${to}`, IfMatch: this.etag }), { abortSignal });
        const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.ContentRange ?? '');
        if (!cr || Number(cr[1]) !== from || Number(cr[2]) !== to || Number(cr[3]) !== this.size || (this.etag && res.ETag && res.ETag !== this.etag)) {
          (res.Body as { destroy?: () => void } | undefined)?.destroy?.();
          throw new TensorizeError('E_FILE_CHANGED', `${this.name}: the object changed while it was being read (asked for bytes ${from}-${to} of ${this.size}, got ${res.ContentRange ?? 'no Content-Range'})`);
        }
        body = res.Body as typeof body;
      } catch (e) {
        throw e instanceof TensorizeError ? e : classifyS3Error(this.name, e, `GetObject bytes ${from}-${to}`, this.from);
      }
      await receiveBody(body, buf, at, this.name, () => body.destroy?.(), abortSignal);
    });
  }

  /**
   * For the native fetcher: a presigned GET URL (valid 12 hours, or until temporary
   * credentials expire) that every ranged request reuses; unsigned for --anonymous.
   */
  async networkTarget(): Promise<NetworkTarget> {
    let url: string;
    try {
      url = await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.loc.bucket, Key: this.loc.key }), { expiresIn: 12 * 3600 });
    } catch (e) {
      throw classifyS3Error(this.name, e, 'presigning GetObject', this.from);
    }
    if (this.anonymous) {
      const u = new URL(url);
      for (const k of [...u.searchParams.keys()]) if (/^x-amz-/i.test(k)) u.searchParams.delete(k);
      url = u.toString();
    }
    return {
      target: httpTarget(url, {}, { etag: this.etag }, s3CA(this.opts)),
      retry: { retries: this.opts.retries, baseDelayMs: this.opts.baseDelayMs, onRetry: this.opts.onRetry, speedLimit: this.opts.speedLimit, speedTimeMs: this.opts.speedTimeMs },
    };
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
