import { Command } from 'commander';

import { parseSize } from '../options.js';
import { formatBytes, gbps, log, peakRssBytes, printJson, type CommonOptions } from '../output.js';

interface Opts extends CommonOptions {
  size: number;
  dir?: string;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('make a synthetic bf16 transformer model, serialize it and verify it (no download needed)')
    .option('--size <bytes>', 'model size, e.g. 64MiB, 1GiB', parseSize, 256 * 2 ** 20)
    .option('--dir <dir>', 'keep the files in this directory (default: a temporary directory, removed afterwards)')
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'no output on stderr')
    .action(async (opts: Opts) => {
      const { makeSyntheticModel, workDir } = await import('../../bench/prepare.js');
      const w = await workDir(opts.dir, 'tensorize-demo-');
      try {
        const m = await makeSyntheticModel(w.dir, opts.size, (l) => log(opts, l));
        log(opts, `peak RSS ${formatBytes(peakRssBytes())}`);
        if (opts.json) {
          const step = (what: string) => m.steps.find((s) => s.what === what)!;
          const ser = step('serialize');
          const ver = step('verify');
          printJson({
            ok: true,
            tensors: m.tensorCount,
            dataBytes: m.dataBytes,
            serialize: { seconds: ser.seconds, gbPerSecond: gbps(ser.bytes, ser.seconds) },
            verify: { seconds: ver.seconds, gbPerSecond: gbps(ver.bytes, ver.seconds), hashesChecked: m.hashesChecked },
            peakRssBytes: peakRssBytes(),
            files: opts.dir ? { safetensors: m.safetensors, tensors: m.tensors } : undefined,
          });
        }
      } finally {
        await w.cleanup();
      }
    });
}
