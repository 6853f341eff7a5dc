import { Command } from 'commander';
import { TENSOR_TYPE_NAMES } from '../../format/constants.js';
import { TensorizerFile } from '../../format/reader.js';
import { decodeCrypt, describeEncryption, encryptedTensors, type EncryptionSummary } from '../../format/crypt.js';
import { verifyError } from '../../format/check.js';
import { TensorizeError } from '../../errors.js';
import { dtypeBySafetensors } from '../../format/dtypes.js';
import { METADATA_OFFSET } from '../../format/constants.js';
import { closeCheckpoint, openCheckpointOrFile, type SafetensorsCheckpoint } from '../../inputs/safetensors-checkpoint.js';
import { withHead } from '../../sources/source.js';
import { DecryptionPlan, readKeySource, type CryptTensor, type DecryptionOptions, type KeySourceOptions } from '../../ops/decrypt.js';
import { native } from '../../native/binding.js';
import type { ByteSource } from '../../sources/source.js';
import { addKeyOptions, addSourceOptions, sourceOptions, type SourceCliOptions } from '../options.js';
import { formatBytes, printJson, result, table, warn, type CommonOptions } from '../output.js';

export function infoCommand(): Command {
  return addKeyOptions(addSourceOptions(
    new Command('info')
      .description('show the data version, flags and tensor table of a .tensors file (reads only the index and the end of the file), or the tensor table and metadata of a safetensors checkpoint')
      .argument('<file>', 'a .tensors or .safetensors file, a *.safetensors.index.json or a model directory: a path, an http(s):// URL or s3://bucket/key (a URL ending in / is a directory)'),
  ))
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
Given a key or passphrase (--key-file, --passphrase-file, TENSORIZE_KEY,
TENSORIZE_PASSPHRASE), info checks it against the first chunk of the first encrypted
tensor (reading at most that chunk): a wrong one is an error (E_DECRYPT, exit 1), and so
is one given for a file that is not encrypted (E_KEY).

A safetensors checkpoint (one file, a sharded index with its shards, a directory) shows the
same table and JSON, with its __metadata__ and, for several shards, which shard holds each
tensor; every shard's header is checked as serialize and load check it (a bad one is an
error, exit 1).`,
    )
    .action(async (file: string, opts: CommonOptions & SourceCliOptions & KeySourceOptions, cmd: Command) => {
      const decryption = await readKeySource(opts);
      const so = sourceOptions({ ...opts, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l));
      const opened = await openCheckpointOrFile(file, METADATA_OFFSET, so);
      if ('checkpoint' in opened) {
        // safetensors has no encryption: a key for it is refused (E_KEY) as for any plain file.
        await DecryptionPlan.create(file, [], decryption).catch(async (e: unknown) => {
          await closeCheckpoint(opened.checkpoint);
          throw e;
        });
        return showSafetensors(file, opened.checkpoint, opts);
      }
      const { other: src, head } = opened;
      try {
        const tf = await TensorizerFile.open(withHead(src, head), { allowTruncated: true });
        const end = await tf.endProblem();
        const problems = end ? [end] : [];
        const i = tf.info;
        const encryption = i.hasCryptInfo && !end ? await encryptionOf(tf, src, decryption).catch((e: unknown) => {
                if (!(e instanceof TensorizeError) || e.code !== 'E_FORMAT') throw e;
                problems.push(e.message);
              })
            : undefined;
        if (!encryption && decryption && problems.length === 0) await DecryptionPlan.create(file, [], decryption);
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
 * parameters). Every header's crypt info is decoded and checked on the way, and the file's
 * tensors must be all encrypted or all not. Given a key or passphrase, it is checked on the
 * first chunk of the first encrypted tensor (E_KEY or E_DECRYPT, thrown, not a problem).
 */
async function encryptionOf(tf: TensorizerFile, src: ByteSource, given: DecryptionOptions | undefined): Promise<(EncryptionSummary & { keyChecked?: boolean }) | undefined> {
  const all: CryptTensor[] = [];
  for (const { entry, header } of await tf.readHeaders()) {
    all.push({ name: entry.name, index: entry.index, dataLength: entry.dataLength, crypt: decodeCrypt(header.crypt?.chunks ?? [], entry.dataLength, `${tf.name}: tensor ${JSON.stringify(entry.name)}`) });
  }
  const enc = encryptedTensors(tf.name, all);
  if (enc.length === 0) return undefined;
  const summary = describeEncryption(enc[0]!.crypt, enc.length);
  if (!given) return summary;
  const plan = (await DecryptionPlan.create(tf.name, all, given))!;
  try {
    const t = enc[0]!;
    const item = plan.item(t.index)!;
    const bytes = await src.read(tf.entries[t.index]!.dataOffset, Math.min(item.chunk, t.dataLength));
    try {
      native().open(plan.keys[item.key]!, item.nonce, item.chunk, item.macs, t.dataLength, 0, bytes);
    } catch (e) {
      throw Object.assign(e as Error, { message: `${tf.name}: tensor ${JSON.stringify(t.name)} (#${t.index}): ${(e as Error).message}` });
    } finally {
      bytes.fill(0);
    }
  } finally {
    plan.wipe();
  }
  return { ...summary, keyChecked: true };
}

function encryptionLine(e: EncryptionSummary & { keyChecked?: boolean }): string {
  const mib = (n: number) => (n % 2 ** 20 === 0 ? `${n / 2 ** 20} MiB` : `${n} B`);
  const how = e.kdf ? `a passphrase (Argon2id v1.3, opslimit ${e.kdf.opslimit}, memlimit ${mib(e.kdf.memlimit)}, salt ${e.kdf.salt})` : 'a 32-byte key';
  return `${e.cipher}${e.chunkSize ? ` in ${mib(e.chunkSize)} chunks` : ''}, ${e.encryptedTensors} tensors; the key comes from ${how}${e.keyChecked ? '; the key given is right (checked on the first chunk)' : ''}`;
}
