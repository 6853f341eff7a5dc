import { Command, Option } from 'commander';

import { parseSize } from '../options.js';
import { formatBytes, gbps, log, peakRssBytes, printJson, table, type CommonOptions } from '../output.js';

interface Opts extends CommonOptions {
  size: number;
  dir?: string;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('make a synthetic bf16 transformer model, serialize it and verify it (no download needed)')
    .addOption(new Option('--size <bytes>', 'model size, e.g. 64MiB, 1GiB').argParser(parseSize).default(256 * 2 ** 20, '256MiB'))
    .option('--dir <dir>', 'keep the files in this directory (default: a temporary directory, removed afterwards)')
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'no progress on stderr (the summary still goes to stdout)')
    .addHelpText('after', '\nOutput: progress on stderr; the summary (each step\'s time and GB/s, peak RSS) on stdout, or one JSON document with --json.')
    .action(async (opts: Opts) => {
      const { makeSyntheticModel, workDir } = await import('../../bench/prepare.js');
      const w = await workDir(opts.dir, 'tensorize-demo-');
      try {
        const m = await makeSyntheticModel(w.dir, opts.size, (l) => log(opts, l));
        const step = (what: string) => m.steps.find((s) => s.what === what)!;
        const ser = step('serialize');
        const ver = step('verify');
        if (opts.json) {
          printJson({
            ok: true,
            tensors: m.tensorCount,
            dataBytes: m.dataBytes,
            serialize: { seconds: ser.seconds, gbPerSecond: gbps(ser.bytes, ser.seconds) },
            verify: { seconds: ver.seconds, gbPerSecond: gbps(ver.bytes, ver.seconds), hashesChecked: m.hashesChecked },
            peakRssBytes: peakRssBytes(),
            files: opts.dir ? { safetensors: m.safetensors, tensors: m.tensors } : undefined,
          });
          return;
        }
        // The result: stdout (progress went to stderr).
        const rows = m.steps.map((s) => [s.what, `${s.seconds.toFixed(2)} s`, s.what === 'make' ? '-' : `${gbps(s.bytes, s.seconds).toFixed(2)} GB/s`, s.what === 'verify' ? `${m.hashesChecked} hashes` : '-']);
        process.stdout.write(
          [
            `tensorize demo: ${m.tensorCount} bf16 tensors, ${formatBytes(m.dataBytes)} of tensor data, data version ${m.version}`,
            table(['step', 'time', 'rate', 'checked'], rows, new Set([1, 2])),
            `peak RSS ${formatBytes(peakRssBytes())}`,
            opts.dir ? `files kept: ${m.safetensors}, ${m.tensors}` : 'files: made in a temporary directory, removed now (--dir keeps them)',
            '',
          ].join('\n'),
        );
      } finally {
        await w.cleanup();
      }
    });
}
