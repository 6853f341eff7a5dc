/**
 * A sequential writer into an S3 object by multipart upload, with bounded memory: bytes fill
 * a part buffer; full parts upload in the background, at most `concurrency` at a time (a
 * write waits when that many are in flight). complete() uploads the last part and completes
 * the upload; abort() (on any failure, or on SIGINT through util/interrupt) aborts it, so
 * no partial object is ever visible.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { TensorizeError } from '../errors.js';
import { classifyS3Error, makeS3Client, parseS3Url, type S3Options } from './s3.js';
import { retrying } from './retry.js';

export interface UploadOptions extends S3Options {
  /** Bytes per part (default 16 MiB; S3 needs at least 5 MiB for all but the last). */
  partSize?: number;
  /** Parts uploading at once (default 4). */
  concurrency?: number;
  /** Bytes the object will have, when known: the part size grows to stay under 10,000 parts. */
  expectedBytes?: number;
}

export const DEFAULT_PART_SIZE = 16 << 20;
const MAX_PARTS = 10_000;

export class MultipartUpload {
  private part: Buffer;
  private used = 0;
  private partNumber = 0;
  private readonly done: CompletedPart[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private failed?: unknown;
  private finished = false;
  /** The abort under way or done: every caller of abort() waits for the same outcome. */
  private aborting?: Promise<void>;
  /** Cancels part uploads in flight when the upload is aborted. */
  private readonly cancel = new AbortController();
  bytes = 0;

  private constructor(
    readonly url: string,
    private readonly client: S3Client,
    private readonly loc: { bucket: string; key: string },
    private readonly uploadId: string,
    private readonly opts: UploadOptions,
    private readonly from: string,
    private readonly partSize: number,
    private readonly endpoint?: string,
  ) {
    this.part = Buffer.allocUnsafeSlow(partSize);
  }

  static async start(url: string, opts: UploadOptions = {}): Promise<MultipartUpload> {
    const loc = parseS3Url(url);
    const { client, from, endpoint } = makeS3Client(opts);
    let partSize = Math.max(5 << 20, opts.partSize ?? DEFAULT_PART_SIZE);
    if (opts.expectedBytes) partSize = Math.max(partSize, Math.ceil(opts.expectedBytes / (MAX_PARTS - 1) / (1 << 20)) * (1 << 20));
    try {
      const r = await retrying(`${url}: CreateMultipartUpload`, opts, async () => {
        try {
          return await client.send(new CreateMultipartUploadCommand({ Bucket: loc.bucket, Key: loc.key, ContentType: 'application/octet-stream' }));
        } catch (e) {
          throw classifyS3Error(url, e, 'CreateMultipartUpload', from);
        }
      });
      if (!r.UploadId) throw new TensorizeError('E_IO', `${url}: CreateMultipartUpload returned no upload id`);
      return new MultipartUpload(url, client, loc, r.UploadId, opts, from, partSize, endpoint);
    } catch (e) {
      client.destroy();
      throw e;
    }
  }

  /** Append bytes (copied; the caller may reuse `data` at once). */
  async write(data: Uint8Array): Promise<void> {
    for (let off = 0; off < data.length; ) {
      if (this.failed) throw this.failed;
      const n = Math.min(data.length - off, this.partSize - this.used);
      this.part.set(data.subarray(off, off + n), this.used);
      this.used += n;
      off += n;
      this.bytes += n;
      if (this.used === this.partSize) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    const body = this.part.subarray(0, this.used);
    const number = ++this.partNumber;
    if (number > MAX_PARTS) throw new TensorizeError('E_IO', `${this.url}: more than ${MAX_PARTS} parts`);
    this.part = Buffer.allocUnsafeSlow(this.partSize);
    this.used = 0;
    const p = this.upload(number, body).catch((e: unknown) => {
      this.failed ??= e;
    });
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
    while (this.inFlight.size >= (this.opts.concurrency ?? 4)) await Promise.race(this.inFlight);
    if (this.failed) throw this.failed;
  }

  private async upload(number: number, body: Buffer): Promise<void> {
    const r = await retrying(`${this.url}: part ${number}`, this.opts, async () => {
      try {
        return await this.client.send(
          new UploadPartCommand({ Bucket: this.loc.bucket, Key: this.loc.key, UploadId: this.uploadId, PartNumber: number, Body: body, ContentLength: body.length }),
          { abortSignal: this.cancel.signal },
        );
      } catch (e) {
        if (this.cancel.signal.aborted) throw this.failed;
        throw classifyS3Error(this.url, e, `UploadPart ${number}`, this.from);
      }
    });
    this.done.push({ PartNumber: number, ETag: r.ETag });
  }

  /** Upload what is left and complete the object. */
  async complete(): Promise<void> {
    if (this.used > 0 || this.partNumber === 0) await this.flush();
    await Promise.all(this.inFlight);
    if (this.failed) throw this.failed;
    const parts = [...this.done].sort((a, b) => a.PartNumber! - b.PartNumber!);
    await retrying(`${this.url}: CompleteMultipartUpload`, this.opts, async () => {
      try {
        return await this.client.send(
          new CompleteMultipartUploadCommand({ Bucket: this.loc.bucket, Key: this.loc.key, UploadId: this.uploadId, MultipartUpload: { Parts: parts } }),
        );
      } catch (e) {
        throw classifyS3Error(this.url, e, 'CompleteMultipartUpload', this.from);
      }
    });
    this.finished = true;
    this.client.destroy();
  }

  /**
   * Abort the upload (idempotent; nothing after complete()): parts in flight are cancelled,
   * and the parts already stored are deleted by AbortMultipartUpload. When the server refuses
   * that, the error says so and what the user must do: the parts stay stored (and billed).
   */
  abort(): Promise<void> {
    if (this.aborting) return this.aborting;
    if (this.finished) return Promise.resolve();
    this.aborting = this.doAbort();
    return this.aborting;
  }

  private async doAbort(): Promise<void> {
    this.finished = true;
    this.failed ??= new TensorizeError('E_INTERRUPTED', `${this.url}: stopped before the upload was completed; no object was created`);
    this.cancel.abort();
    try {
      await retrying(`${this.url}: AbortMultipartUpload`, { ...this.opts, retries: 2 }, async () => {
        try {
          return await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.loc.bucket, Key: this.loc.key, UploadId: this.uploadId }));
        } catch (e) {
          throw classifyS3Error(this.url, e, 'AbortMultipartUpload', this.from);
        }
      });
    } catch (e) {
      const why = (e as Error).message.replace(`${this.url}: `, '');
      const endpoint = this.endpoint ? ` --endpoint-url ${this.endpoint}` : '';
      throw new TensorizeError('E_IO', `${this.url}: the incomplete multipart upload ${this.uploadId} could not be aborted (${why}); the parts it holds stay stored, and billed, until it is`, {
        hints: [
          `abort it yourself: aws s3api abort-multipart-upload --bucket ${this.loc.bucket} --key ${this.loc.key} --upload-id ${this.uploadId}${endpoint}`,
          'or let a bucket lifecycle rule (AbortIncompleteMultipartUpload) remove such uploads',
        ],
        cause: e,
      });
    } finally {
      this.client.destroy();
    }
  }
}
