import { Command } from 'commander';
import { TENSOR_TYPE_NAMES } from '../../format/constants.js';
import { TensorizerFile } from '../../format/reader.js';
import { openSource } from '../../sources/open.js';
import { addSourceOptions, sourceOptions, type SourceCliOptions } from '../options.js';
import { formatBytes, printJson, table, warn, type CommonOptions } from '../output.js';

export function infoCommand(): Command {
  return addSourceOptions(
    new Command('info')
      .description('show the data version, flags and tensor table of a .tensors file (reads only the index)')
      .argument('<file>', 'a .tensors file: a path, an http(s):// URL or s3://bucket/key'),
  )
    .option('--json', 'print one JSON document on stdout')
    .action(async (file: string, opts: CommonOptions & SourceCliOptions, cmd: Command) => {
      const src = await openSource(file, sourceOptions({ ...opts, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l)));
      try {
        const tf = await TensorizerFile.open(src);
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
          file,
          fileBytes: i.fileSize,
          dataVersion: i.version,
          flags: `0x${i.flags.toString(16)}`,
          encrypted: i.hasCryptInfo,
          tensorCount: i.tensorCount,
          dataBytes,
          metadataBytes: i.metadataLength,
          tensors,
        };
        if (opts.json) {
          printJson(doc);
          return;
        }
        const out = process.stderr;
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
      } finally {
        await src.close();
      }
    });
}
