/**
 * One entry point for every byte source: a local path, an http(s):// URL or s3://bucket/key.
 * The HTTP and S3 clients (undici, the AWS SDK: about 0.2 s of module loading) are imported
 * only when such a source is opened, so a local load starts without them.
 */
import { FileSource } from './file.js';
import type { HttpOptions } from './http.js';
import type { S3Options } from './s3.js';
import type { ByteSource } from './source.js';

export interface SourceOptions {
  http?: HttpOptions;
  s3?: S3Options;
}

export type SourceKind = 'file' | 'http' | 's3';

export function sourceKind(spec: string): SourceKind {
  if (/^https?:\/\//i.test(spec)) return 'http';
  if (/^s3:\/\//i.test(spec)) return 's3';
  return 'file';
}

export async function openSource(spec: string, opts: SourceOptions = {}): Promise<ByteSource> {
  switch (sourceKind(spec)) {
    case 'http':
      return (await import('./http.js')).HttpSource.open(spec, opts.http);
    case 's3':
      return (await import('./s3.js')).S3Source.open(spec, opts.s3);
    default:
      return FileSource.open(spec);
  }
}
