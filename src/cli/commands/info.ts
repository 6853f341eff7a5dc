import { Command } from 'commander';
import { TENSOR_TYPE_NAMES } from '../../format/constants.js';
import { TensorizerFile } from '../../format/reader.js';
import { verifyError } from '../../format/check.js';
import { openSource } from '../../sources/open.js';
import { addSourceOptions, sourceOptions, type SourceCliOptions } from '../options.js';
import { formatBytes, printJson, result, table, warn, type CommonOptions } from '../output.js';

export function infoCommand(): Command {
  return addSourceOptions(
    new Command('info')
      .description('show the data version, flags and tensor table of a .tensors file (reads only the index and the end of the file)')
      .argument('<file>', 'a .tensors file: a path, an http(s):// URL or s3://bucket/key'),
  )
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'print nothing; the exit status says whether the index is sound')
    .addHelpText(
      'after',
      `
Reads the file header, the index and the last bytes of the file, never the tensor data or
headers (verify checks those). A file whose index runs past its end (cut short) or that has
unexpected bytes after its last record is still shown, followed by the problem, and the
exit status is 1.`,
    )
    .action(async (file: string, opts: CommonOptions & SourceCliOptions, cmd: Command) => {
      const src = await openSource(file, sourceOptions({ ...opts, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l)));
      try {
        const tf = await TensorizerFile.open(src, { allowTruncated: true });
        const end = await tf.endProblem();
        const problems = end ? [end] : [];
        const i = tf.info;
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
          fileBytes: i.fileSize,
          dataVersion: i.version,
          flags: `0x${i.flags.toString(16)}`,
          encrypted: i.hasCryptInfo,
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
