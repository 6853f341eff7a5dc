/** Option parsers shared by commands: they throw commander's InvalidArgumentError (exit 2). */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { usageError } from '../errors.js';
import type { SourceOptions } from '../sources/open.js';
import { parseSize as parseBytes } from '../util/units.js';

export function parsePositiveInt(name: string, max = 1024): (v: string) => number {
  return (v: string) => {
    if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError(`${name} must be a positive integer`);
    const n = Number(v);
    if (n < 1 || n > max) throw new InvalidArgumentError(`${name} must be between 1 and ${max}`);
    return n;
  };
}

/** Sizes such as 1048576, 512k, 16MiB, 1.5G (binary multiples): util/units.ts's parseSize, as an option parser. */
export function parseSize(v: string): number {
  try {
    return parseBytes(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/** The options every command that reads a .tensors source takes, for http(s):// and s3:// sources. */
export interface SourceCliOptions {
  header?: Record<string, string>;
  caFile?: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  anonymous?: boolean;
  concurrency?: number;
  retries?: number;
  speedLimit?: number;
  speedTime?: number;
  verbose?: boolean;
}

function collectHeader(v: string, prev: Record<string, string> | undefined): Record<string, string> {
  const i = v.indexOf(':');
  if (i <= 0) throw new InvalidArgumentError(`--header "${v}" is not "Name: value"`);
  return { ...prev, [v.slice(0, i).trim().toLowerCase()]: v.slice(i + 1).trim() };
}

/** --header and --ca-file (HTTP(S) sources, and https:// S3 endpoints). */
export function addHttpOptions(c: Command): Command {
  return c
    .option('--header <"Name: value">', 'HTTP(S): an extra request header, e.g. Authorization (repeatable)', collectHeader)
    .option('--ca-file <pem>', 'HTTPS and https:// S3 endpoints: trust the certificate authorities in this PEM file (S3 default: $AWS_CA_BUNDLE)')
    .addHelpText('after', '\nProxies come from the environment, as for curl: HTTPS_PROXY, HTTP_PROXY, NO_PROXY (or lower case);\nevery connection is a CONNECT tunnel, credentials from the URL: http://user:password@proxy:3128.');
}

export function addSourceOptions(c: Command): Command {
  return addS3Options(addHttpOptions(c))
    .option('--concurrency <n>', 'HTTP/S3: range requests in flight (default 8)', parsePositiveInt('--concurrency', 256))
    .option('--retries <n>', 'HTTP/S3: retries of a failed or interrupted request, resumed where it stopped (default 5)', parseCount('--retries', 100))
    .addOption(speedLimitOption())
    .addOption(speedTimeOption());
}

/** The low-speed limit of HTTP/S3 reads, as curl's --speed-limit and --speed-time (see sources/retry.ts). */
export function speedLimitOption(): Option {
  return new Option('--speed-limit <bytes/s>', 'HTTP/S3: a request slower than this on average over --speed-time is retried, then an error; 0: off (default 1KiB)').argParser((v: string) =>
    /^\s*0+\s*$/.test(v) ? 0 : parseSize(v.replace(/\/s$/i, '')),
  );
}

export function speedTimeOption(): Option {
  return new Option('--speed-time <seconds>', 'HTTP/S3: the window of --speed-limit (default 30)').argParser((v: string) => {
    const n = Number(v);
    if (!/^[0-9]+(\.[0-9]+)?$/.test(v.trim()) || !(n > 0) || n > 86400) throw new InvalidArgumentError('--speed-time must be a number of seconds above 0, at most 86400');
    return n;
  });
}

/** S3 client settings (for reading s3:// sources and for serialize -o s3://). */
export function addS3Options(c: Command): Command {
  return c
    .option('--endpoint <url>', 'S3: endpoint URL (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, host_base of ~/.s3cfg, else AWS)')
    .option('--region <name>', 'S3: region (default: AWS_REGION, the AWS profile, ~/.s3cfg, else us-east-1)')
    .option('--path-style', 'S3: path-style addressing (the default with a custom endpoint)')
    .option('--anonymous', 'S3: unsigned requests, for public buckets');
}

export function parseCount(name: string, max: number): (v: string) => number {
  return (v: string) => {
    if (!/^[0-9]+$/.test(v) || Number(v) > max) throw new InvalidArgumentError(`${name} must be an integer between 0 and ${max}`);
    return Number(v);
  };
}

/** SourceOptions for openSource() from the command line; warnings and retries go to stderr. */
export function sourceOptions(o: SourceCliOptions, warn: (line: string) => void): SourceOptions {
  const onRetry = o.verbose ? (m: string) => process.stderr.write(`retry: ${m}\n`) : undefined;
  const speed = { speedLimit: o.speedLimit, speedTimeMs: o.speedTime === undefined ? undefined : o.speedTime * 1000 };
  return {
    http: {
      headers: o.header,
      ca: o.caFile ? readCa(o.caFile) : undefined,
      connections: o.concurrency,
      retries: o.retries,
      onRetry,
      onWarning: warn,
      ...speed,
    },
    s3: { endpoint: o.endpoint, region: o.region, pathStyle: o.pathStyle, anonymous: o.anonymous, connections: o.concurrency, retries: o.retries, onRetry, ca: o.caFile ? readCa(o.caFile) : undefined, ...speed },
  };
}

function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw usageError(`--ca-file ${path}: ${(e as Error).message}`);
  }
}

/** An encrypted file's key or passphrase: from files or the environment only, never as a value on the command line. */
export function addKeyOptions(c: Command): Command {
  return c
    .option('--key-file <path>', 'an encrypted file\'s key: 32 bytes, or 64 hex characters (or TENSORIZE_KEY=<hex>)')
    .option('--passphrase-file <path>', 'an encrypted file\'s passphrase, its last line break ignored (or TENSORIZE_PASSPHRASE)');
}
