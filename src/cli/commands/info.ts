import { Command } from 'commander';
import { TENSOR_TYPE_NAMES } from '../../format/constants.js';
import { TensorizerFile } from '../../format/reader.js';
import { decodeCrypt, describeEncryption, type EncryptionSummary, type TensorCrypt } from '../../format/crypt.js';
import { verifyError } from '../../format/check.js';
import { dtypeBySafetensors } from '../../format/dtypes.js';
import { METADATA_OFFSET } from '../../format/constants.js';
import { closeCheckpoint, openCheckpointOrFile, type SafetensorsCheckpoint } from '../../inputs/safetensors-checkpoint.js';
import { withHead } from '../../sources/source.js';
import { addSourceOptions, sourceOptions, type SourceCliOptions } from '../options.js';
import { formatBytes, printJson, result, table, warn, type CommonOptions } from '../output.js';

export function infoCommand(): Command {
  return addSourceOptions(
    new Command('info')
      .description('show the data version, flags and tensor table of a .tensors file (reads only the index and the end of the file), or the tensor table and metadata of a safetensors checkpoint')
      .argument('<file>', 'a .tensors or .safetensors file, a *.safetensors.index.json or a model directory: a path, an http(s):// URL or s3://bucket/key (a URL ending in / is a directory)'),
  )
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'print nothing; the exit status says whether the index is sound')
    .addHelpText(
      'after',
      `
Reads the file header, the index and the last bytes of the file, never the tensor data or
headers (verify checks those). A file whose index runs past its end (cut short) or that has
unexpected bytes after its last record is still shown, followed by the problem, and the
exit status is 1. An encrypted file's tensor headers are read too: info says how it is
encrypted (XSalsa20-Poly1305 per chunk; a 32-byte key, or a passphrase with its Argon2id
parameters and salt), with no key needed, and a malformed crypt-info block is a problem.

A safetensors checkpoint (one file, a sharded index with its shards, a directory) shows the
same table and JSON, with its __metadata__ and, for several shards, which shard holds each
tensor; every shard's header is checked as serialize and load check it (a bad one is an
error, exit 1).`,
    )
    .action(async (file: string, opts: CommonOptions & SourceCliOptions, cmd: Command) => {
      const so = sourceOptions({ ...opts, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l));
      const opened = await openCheckpointOrFile(file, METADATA_OFFSET, so);
      if ('checkpoint' in opened) return showSafetensors(file, opened.checkpoint, opts);
      const { other: src, head } = opened;
      try {
        const tf = await TensorizerFile.open(withHead(src, head), { allowTruncated: true });
        const end = await tf.endProblem();
        const problems = end ? [end] : [];
        const i = tf.info;
        const encryption = i.hasCryptInfo && !end ? await encryptionOf(tf).catch((e: unknown) => void problems.push((e as Error).message)) : undefined;
        const tensors = tf.entries.map((e) => ({
          name: e.path.length === 1 && typeof e.path[0] === 'string' ? e.path[0] : e.path,
          type: TENSOR_TYPE_NAMES[e.type],
          dtype: e.dtype.name,
          dtypeString: e.dtypeString,
          shape: e.shape,
          bytes: e.byteSize,
          dataOffset: e.dataOffset,
          dataLength: e.dataLength,
          meta: e.byteSize > 0 && e.dataLength === 0,
        }));
        const dataBytes = tf.entries.reduce((n, e) => n + e.dataLength, 0);
        const doc = {
          ok: problems.length === 0,
          file,
          format: 'tensorizer',
          fileBytes: i.fileSize,
          dataVersion: i.version,
          flags: `0x${i.flags.toString(16)}`,
          encrypted: i.hasCryptInfo,
          ...(encryption ? { encryption } : {}),
          tensorCount: i.tensorCount,
          dataBytes,
          metadataBytes: i.metadataLength,
          problems,
          tensors,
        };
        const fail = () => (problems.length ? verifyError(file, [], problems, { reported: opts.json }) : undefined);
        if (opts.json) {
          printJson(doc);
          const e = fail();
          if (e) throw e;
          return;
        }
        if (opts.quiet) {
          const e = fail();
          if (e) throw e;
          return;
        }
        const out = { write: result };
        out.write(`file:          ${file} (${formatBytes(i.fileSize)})\n`);
        out.write(`data version:  ${i.version}\n`);
        out.write(`flags:         ${doc.flags}${i.hasCryptInfo ? ' (encrypted)' : ''}\n`);
        if (encryption) out.write(`encryption:    ${encryptionLine(encryption)}\n`);
        out.write(`tensors:       ${i.tensorCount}\n`);
        out.write(`total bytes:   ${dataBytes} (${formatBytes(dataBytes)})\n\n`);
        const rows = tf.entries.map((e, k) => [
          e.name,
          TENSOR_TYPE_NAMES[e.type],
          e.dtype.name,
          `[${e.shape.join(', ')}]`,
          tensors[k]!.meta ? `${e.byteSize} (meta)` : String(e.byteSize),
        ]);
        out.write(`${table(['name', 'type', 'dtype', 'shape', 'bytes'], rows, new Set([4]))}\n`);
        const e = fail();
        if (e) throw e;
      } finally {
        await src.close();
      }
    });
}

/** info on a safetensors checkpoint: the .tensors table and JSON shape, plus its metadata and shards. */
async function showSafetensors(file: string, c: SafetensorsCheckpoint, opts: CommonOptions): Promise<void> {
  try {
    for (const w of c.warnings) warn(opts, w);
    const several = c.shards.length > 1;
    const tensors = c.shards.flatMap((s) =>
      s.header.tensors.map((t) => ({
        name: t.name,
        type: 'state_dict',
        dtype: dtypeBySafetensors(t.dtype)?.name ?? t.dtype,
        dtypeString: t.dtype,
        shape: t.shape,
        bytes: t.end - t.begin,
        dataOffset: s.header.dataStart + t.begin,
        dataLength: t.end - t.begin,
        meta: false,
        ...(several ? { file: s.name } : {}),
      })),
    );
    const fileBytes = c.shards.reduce((n, s) => n + s.source.size, 0);
    const dataBytes = tensors.reduce((n, x) => n + x.dataLength, 0);
    const doc = {
      ok: true,
      file,
      format: 'safetensors',
      fileBytes,
      dataVersion: null,
      flags: null,
      encrypted: false,
      tensorCount: tensors.length,
      dataBytes,
      metadataBytes: c.shards.reduce((n, s) => n + s.header.dataStart, 0),
      problems: [],
      metadata: Object.fromEntries(c.metadata),
      ...(c.index ? { index: c.index } : {}),
      shards: c.shards.map((s) => ({ file: s.name, bytes: s.source.size, tensors: s.header.tensors.length })),
      tensors,
    };
    if (opts.json) return printJson(doc);
    if (opts.quiet) return;
    const out = { write: result };
    out.write(`file:          ${file} (${formatBytes(fileBytes)})\n`);
    out.write(`format:        safetensors${several ? `, ${c.shards.length} shards${c.index ? ` (index ${c.index})` : ''}` : ''}\n`);
    out.write(`tensors:       ${tensors.length}\n`);
    out.write(`total bytes:   ${dataBytes} (${formatBytes(dataBytes)})\n`);
    for (const [k, v] of c.metadata) out.write(`metadata:      ${k} = ${JSON.stringify(v).slice(0, 200)}\n`);
    out.write('\n');
    const rows = tensors.map((x) => [x.name, x.dtypeString, `[${x.shape.join(', ')}]`, String(x.bytes), ...(several ? [x.file!.split('/').pop()!] : [])]);
    out.write(`${table(['name', 'dtype', 'shape', 'bytes', ...(several ? ['shard'] : [])], rows, new Set([3]))}\n`);
  } finally {
    await closeCheckpoint(c);
  }
}

/**
 * How an encrypted file is encrypted, from its tensor headers (cleartext; no key needed):
 * the cipher, and whether the key is given or derived from a passphrase (with the Argon2id
 * parameters). Every header's crypt info is decoded and checked on the way.
 */
async function encryptionOf(tf: TensorizerFile): Promise<EncryptionSummary | undefined> {
  let first: TensorCrypt | undefined;
  let encrypted = 0;
  for (const { entry, header } of await tf.readHeaders()) {
    const c = decodeCrypt(header.crypt?.chunks ?? [], entry.dataLength, `${tf.name}: tensor ${JSON.stringify(entry.name)}`);
    if (!c.cipher) continue;
    encrypted++;
    first ??= c;
  }
  return first ? describeEncryption(first, encrypted) : undefined;
}

function encryptionLine(e: EncryptionSummary): string {
  const mib = (n: number) => (n % 2 ** 20 === 0 ? `${n / 2 ** 20} MiB` : `${n} B`);
  const how = e.kdf ? `a passphrase (Argon2id v1.3, opslimit ${e.kdf.opslimit}, memlimit ${mib(e.kdf.memlimit)}, salt ${e.kdf.salt})` : 'a 32-byte key';
  return `${e.cipher}${e.chunkSize ? ` in ${mib(e.chunkSize)} chunks` : ''}, ${e.encryptedTensors} tensors; the key comes from ${how}`;
}
