import { Command, Option } from 'commander';
import { exportSafetensors, type MetaPolicy } from '../../outputs/safetensors.js';
import { openSource } from '../../sources/open.js';
import { addSourceOptions, parsePositiveInt, sourceOptions, type SourceCliOptions } from '../options.js';
import { formatBytes, gbps, log, peakRssBytes, printJson, Progress, warn, type CommonOptions } from '../output.js';

interface Opts extends CommonOptions, SourceCliOptions {
  output: string;
  meta: MetaPolicy;
  joinPaths?: boolean;
  verify: boolean;
  threads?: number;
}

export function exportCommand(): Command {
  return addSourceOptions(
    new Command('export')
      .description('convert a .tensors file back to safetensors')
      .argument('<file>', 'a .tensors file: a path, an http(s):// URL or s3://bucket/key'),
  )
    .requiredOption('-o, --output <file>', 'output .safetensors file')
    .addOption(new Option('--meta <policy>', 'meta tensors (no data): skip them, write zeros, or fail').choices(['skip', 'zeros', 'error']).default('skip'))
    .option('--join-paths', 'write structured paths such as ["layers", 0, "w"] as dotted names ("layers.0.w")')
    .option('--no-verify', 'do not check the stored hashes while copying')
    .option('--threads <n>', 'worker threads (default: CPU count)', parsePositiveInt('--threads', 256))
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'no progress or summary on stderr')
    .addHelpText(
      'after',
      `
Bytes are copied exactly and checked against the stored hashes on the way. Tensors that
safetensors cannot express (dtypes such as complex128 or float8_e4m3fnuz, structured
paths without --join-paths) stop the export with an error naming them; no partial
output is left behind.`,
    )
    .action(async (file: string, opts: Opts, cmd: Command) => {
      const t0 = performance.now();
      const src = await openSource(file, sourceOptions({ ...opts, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l)));
      const progress = new Progress(opts, 'export');
      try {
        const s = await exportSafetensors(src, opts.output, {
          meta: opts.meta,
          joinPaths: opts.joinPaths,
          verify: opts.verify,
          threads: opts.threads,
          concurrency: opts.concurrency,
          onStart: progress.start,
          onProgress: progress.add,
        }).finally(() => progress.stop());
        const seconds = (performance.now() - t0) / 1000;
        for (const w of s.warnings) warn(opts, w);
        if (opts.json) printJson({ ok: true, input: file, ...s, seconds: Number(seconds.toFixed(3)), peakRssBytes: peakRssBytes() });
        else log(opts, `wrote ${s.path}: ${s.tensors} tensors, ${formatBytes(s.dataBytes)} in ${seconds.toFixed(2)} s (${gbps(s.dataBytes, seconds).toFixed(2)} GB/s)`);
      } finally {
        await src.close();
      }
    });
}
