import { Command, Option } from 'commander';
import { exportSafetensors, type MetaPolicy } from '../../ops/export.js';
import { basename } from 'node:path';
import { openSource, sourceKind } from '../../sources/open.js';
import { refuseOverwrite, resolveOutput } from '../../util/outpath.js';
import { readKeySource, type KeySourceOptions } from '../../ops/decrypt.js';
import { addKeyOptions, addSourceOptions, parsePositiveInt, sourceOptions, type SourceCliOptions } from '../options.js';
import { formatBytes, gbps, peakRssBytes, printJson, Progress, report, warn, type CommonOptions } from '../output.js';

interface Opts extends CommonOptions, SourceCliOptions, KeySourceOptions {
  output: string;
  meta: MetaPolicy;
  joinPaths?: boolean;
  verify: boolean;
  threads?: number;
}

export function exportCommand(): Command {
  return addKeyOptions(
    addSourceOptions(
      new Command('export')
        .description('convert a .tensors file back to safetensors')
        .argument('<file>', 'a .tensors file: a path, an http(s):// URL or s3://bucket/key'),
    ),
  )
    .requiredOption('-o, --output <file>', 'output .safetensors file, or a directory to write <name>.safetensors into')
    .addOption(new Option('--meta <policy>', 'meta tensors (no data): skip them, write zeros, or fail').choices(['skip', 'zeros', 'error']).default('skip'))
    .option('--join-paths', 'write structured paths such as ["layers", 0, "w"] as dotted names ("layers.0.w")')
    .option('--no-verify', 'do not check the stored hashes while copying (tensors without hashes are then allowed)')
    .option('--threads <n>', 'worker threads (default: CPU count)', parsePositiveInt('--threads', 256))
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'no progress and no summary')
    .addHelpText(
      'after',
      `
The file is checked as verify checks it before anything is written (every tensor header,
the end of the file, the hashes of tensors without data); then bytes are copied exactly
and checked against the stored hashes on the way. A tensor that stores no hash is an
error: --no-verify copies the bytes as they are, unchecked. Tensors that safetensors
cannot express (dtypes such as complex128 or float8_e4m3fnuz, structured paths without
--join-paths) stop the export with an error naming them; no partial output is left
behind. Tensors are written largest element size first (file order within a size), as
the safetensors writer orders them, so every tensor starts at a multiple of its element
size. -o naming a directory writes <name>.safetensors into it; -o naming the input is
refused. An encrypted file needs its key (--key-file, TENSORIZE_KEY) or passphrase
(--passphrase-file, TENSORIZE_PASSPHRASE): every chunk is authenticated as it is
decrypted, and a chunk that fails leaves no output file.`,
    )
    .action(async (file: string, opts: Opts, cmd: Command) => {
      const t0 = performance.now();
      const base = basename(sourceKind(file) === 'file' ? file : new URL(file).pathname).replace(/\.tensors$/, '');
      opts.output = await resolveOutput(opts.output, `${base || 'model'}.safetensors`);
      if (sourceKind(file) === 'file') await refuseOverwrite(opts.output, [file]);
      const decryption = await readKeySource(opts);
      const src = await openSource(file, sourceOptions({ ...opts, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l)));
      const progress = new Progress(opts, 'export');
      try {
        const s = await exportSafetensors(src, opts.output, {
          meta: opts.meta,
          joinPaths: opts.joinPaths,
          verify: opts.verify,
          decryption,
          threads: opts.threads,
          concurrency: opts.concurrency,
          onStart: progress.start,
          onProgress: progress.add,
        }).finally(() => progress.stop());
        const seconds = (performance.now() - t0) / 1000;
        for (const w of s.warnings) warn(opts, w);
        if (opts.json) printJson({ ok: true, input: file, ...s, seconds: Number(seconds.toFixed(3)), peakRssBytes: peakRssBytes() });
        else report(opts, `wrote ${s.path}: ${s.tensors} tensors, ${formatBytes(s.dataBytes)} in ${seconds.toFixed(2)} s (${gbps(s.dataBytes, seconds).toFixed(2)} GB/s)`);
      } finally {
        await src.close();
      }
    });
}
