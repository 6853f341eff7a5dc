/**
 * One error class for everything tensorize reports on purpose. `code` is stable
 * (scripts may switch on it); `exitCode` is what the CLI exits with.
 */
export const ERROR_CODES = [
  'E_USAGE', // bad command line or options
  'E_NOT_FOUND', // an input path does not exist
  'E_IO', // a read or write failed, or returned fewer bytes than asked
  'E_FORMAT', // a .tensors file is malformed
  'E_SAFETENSORS', // a safetensors input is malformed
  'E_INPUT', // an input is unusable for another reason (e.g. no weights in a directory)
  'E_HASH_MISMATCH', // stored CRC32/SHA-256 disagrees with the data
  'E_UNSUPPORTED', // valid but not supported (yet), e.g. a dimension of 2^53 or more
  'E_INEXPRESSIBLE', // a tensor cannot be written in the target format
  'E_PICKLE', // a PyTorch checkpoint's pickle is malformed or exceeds a limit
  'E_PICKLE_GLOBAL', // a pickle names a global that is not allowlisted (it would run code)
  'E_INTERRUPTED',
  'E_NATIVE_UNAVAILABLE', // the native addon is not built or cannot load
  'E_NO_DEVICE', // no usable GPU: no driver, a driver too old, no device, or no such device
  'E_DEVICE_OOM', // out of GPU memory (allocating device memory)
  'E_HOST_OOM', // out of host memory (pinned or ordinary)
  // A device call failed; the code names the operation, the message the driver call and its error:
  'E_DEVICE_ALLOC', // allocating device memory (other than running out of it)
  'E_DEVICE_FREE', // freeing device memory
  'E_DEVICE_REGISTER', // pinning or unpinning host memory
  'E_DEVICE_STREAM', // creating or destroying a stream
  'E_DEVICE_COPY', // a host-to-device copy
  'E_DEVICE_EVENT', // creating, recording or destroying an event
  'E_DEVICE_SYNC', // waiting for a stream, an event or the device (where queued work fails)
  'E_DEVICE_CALLBACK', // queueing a host function
  'E_DEVICE_READ', // a device-to-host read
  'E_DEVICE', // another device failure
  'E_FILE_CHANGED', // the file was truncated or modified while it was being read
  'E_DECRYPT', // encrypted data did not authenticate: a wrong key or passphrase, or changed data or MACs
  'E_KEY', // a key or passphrase is missing, unusable, or given for a file that is not encrypted
  'E_NATIVE', // an unexpected failure inside the native addon
] as const;

/**
 * One list with native/src/errors.h (TZ_ERROR_CODES): test/error-codes.test.ts checks that
 * both name the same codes in the same order.
 */
export type ErrorCode = (typeof ERROR_CODES)[number];

export class TensorizeError extends Error {
  readonly code: ErrorCode;
  /** Extra lines telling the user what to do. */
  readonly hints: string[];
  /** The command already printed its --json result document for this failure. */
  readonly reported: boolean;
  constructor(code: ErrorCode, message: string, opts: { hints?: string[]; cause?: unknown; reported?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'TensorizeError';
    this.code = code;
    this.hints = opts.hints ?? [];
    this.reported = opts.reported ?? false;
  }
  get exitCode(): number {
    if (this.code === 'E_USAGE') return 2;
    if (this.code === 'E_INTERRUPTED') return 130;
    return 1;
  }
}

export function usageError(message: string, hints?: string[]): TensorizeError {
  return new TensorizeError('E_USAGE', message, { hints });
}

/** Add which tensor was being processed to an error (file-system errors become E_IO). */
export function inTensor(e: unknown, tensor: string): TensorizeError {
  if (e instanceof TensorizeError) return new TensorizeError(e.code, `${e.message} (tensor ${JSON.stringify(tensor)})`, { hints: e.hints, cause: e });
  return new TensorizeError('E_IO', `${(e as Error)?.message ?? String(e)} (tensor ${JSON.stringify(tensor)})`, { cause: e });
}

/** Where in a file something went wrong, for messages: `file.tensors @ byte 1234 (tensor "x")`. */
export function at(file: string, offset: number | bigint, tensor?: string): string {
  return `${file} @ byte ${offset}${tensor === undefined ? '' : ` (tensor ${JSON.stringify(tensor)})`}`;
}
