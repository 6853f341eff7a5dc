/** One entry point for every byte source: a local path, an http(s):// URL or s3://bucket/key. */
import { FileSource } from './file.js';
import { HttpSource, type HttpOptions } from './http.js';
import { S3Source, type S3Options } from './s3.js';
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
      return HttpSource.open(spec, opts.http);
    case 's3':
      return S3Source.open(spec, opts.s3);
    default:
      return FileSource.open(spec);
  }
}
