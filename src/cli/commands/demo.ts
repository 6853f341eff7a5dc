import { Command } from 'commander';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TensorizeError } from '../../errors.js';
import { TensorType } from '../../format/constants.js';
import { verifyFile } from '../../format/verify.js';
import { writeTensorizer } from '../../format/writer.js';
import { openInput } from '../../inputs/index.js';
import { FileSource } from '../../sources/file.js';
import { writeSyntheticSafetensors } from '../../synthetic.js';
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
      const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'tensorize-demo-')));
      try {
        const st = join(dir, 'model.safetensors');
        const out = join(dir, 'model.tensors');
        let t = performance.now();
        const specs = await writeSyntheticSafetensors(st, opts.size);
        const makeS = (performance.now() - t) / 1000;
        log(opts, `made ${st}: ${specs.length} bf16 tensors in ${makeS.toFixed(2)} s`);
        t = performance.now();
        const model = await openInput(st);
        const w = await writeTensorizer(
          out,
          model.tensors.map((x) => ({ path: x.path, type: TensorType.STATE_DICT, dtype: x.dtype, shape: x.shape, data: x.data })),
        );
        const serS = (performance.now() - t) / 1000;
        log(opts, `serialized to ${out}: ${formatBytes(w.dataBytes)} in ${serS.toFixed(2)} s (${gbps(w.dataBytes, serS).toFixed(2)} GB/s), data version ${w.version}`);
        t = performance.now();
        const src = await FileSource.open(out);
        const v = await verifyFile(src).finally(() => src.close());
        const verS = (performance.now() - t) / 1000;
        if (!v.ok) throw new TensorizeError('E_HASH_MISMATCH', `${out}: verification failed`);
        log(opts, `verified ${v.hashesChecked} hashes in ${verS.toFixed(2)} s (${gbps(v.dataBytes, verS).toFixed(2)} GB/s); peak RSS ${formatBytes(peakRssBytes())}`);
        if (opts.json) {
          printJson({
            ok: true,
            tensors: w.tensors,
            dataBytes: w.dataBytes,
            serialize: { seconds: serS, gbPerSecond: gbps(w.dataBytes, serS) },
            verify: { seconds: verS, gbPerSecond: gbps(v.dataBytes, verS), hashesChecked: v.hashesChecked },
            peakRssBytes: peakRssBytes(),
            files: opts.dir ? { safetensors: st, tensors: out } : undefined,
          });
        }
      } finally {
        if (!opts.dir) await rm(dir, { recursive: true, force: true });
      }
    });
}
