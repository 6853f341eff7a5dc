import { Command } from 'commander';
import { verifyError } from '../../format/check.js';
import { verifyFile } from '../../ops/verify.js';
import { openSource } from '../../sources/open.js';
import { readKeySource, type KeySourceOptions } from '../../ops/decrypt.js';
import { addKeyOptions, addSourceOptions, parsePositiveInt, sourceOptions, type SourceCliOptions } from '../options.js';
import { formatBytes, gbps, peakRssBytes, printJson, Progress, report, result, warn, type CommonOptions } from '../output.js';

interface Opts extends CommonOptions, SourceCliOptions, KeySourceOptions {
  threads?: number;
}

export function verifyCommand(): Command {
  return addKeyOptions(addSourceOptions(
    new Command('verify')
      .description('check the structure of a .tensors file and every CRC32 and SHA-256 it stores')
      .argument('<file>', 'a .tensors file: a path, an http(s):// URL or s3://bucket/key'),
  ))
    .option('--threads <n>', 'worker threads that hash (default: CPU count)', parsePositiveInt('--threads', 256))
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'print nothing on success')
    .addHelpText(
      'after',
      `
Checks the file header, the index, that records are contiguous and agree with the index,
then recomputes each tensor's hashes over its header and data exactly as tensorizer does.
An encrypted file needs its key (--key-file, TENSORIZE_KEY) or passphrase
(--passphrase-file, TENSORIZE_PASSPHRASE): each chunk is authenticated and decrypted, and
the hashes are checked over the decrypted data.
Remote files (http://, https://, s3://) are read by range, --concurrency requests at a
time, with retries that resume where a request stopped; an object that changes while it is
being read is an error. S3 credentials, region and endpoint come from the AWS SDK chain
(environment, AWS_PROFILE, ~/.aws), else from ~/.s3cfg; see --endpoint.
Exit status: 0 when everything passes, 1 when any check fails (the message names the
tensor and the hash), 2 on a usage error.`,
    )
    .action(async (file: string, opts: Opts, cmd: Command) => {
      const t0 = performance.now();
      const decryption = await readKeySource(opts);
      const src = await openSource(file, sourceOptions({ ...opts, verbose: cmd.optsWithGlobals().verbose }, (l) => warn(opts, l)));
      const progress = new Progress(opts, 'verify');
      try {
        const r = await verifyFile(src, { decryption, threads: opts.threads, concurrency: opts.concurrency, onStart: progress.start, onProgress: progress.add }).finally(() => progress.stop());
        const seconds = (performance.now() - t0) / 1000;
        for (const w of r.warnings) warn(opts, w);
        if (opts.json) {
          printJson({ ...r, seconds: Number(seconds.toFixed(3)), peakRssBytes: peakRssBytes() });
        } else {
          for (const f of r.failures) {
            result(`FAILED: tensor ${JSON.stringify(f.tensor)} (#${f.index}): ${f.hash === 'crc32' ? 'CRC32' : 'SHA-256'} mismatch: stored ${f.expected}, computed ${f.actual}\n`);
          }
          for (const p of r.problems) result(`FAILED: ${p}\n`);
          if (r.ok) {
            report(opts, `OK ${file}: data version ${r.version}, ${r.tensors} tensors${r.encrypted ? ` (${r.encrypted} encrypted, decrypted and authenticated)` : ''}, ${formatBytes(r.dataBytes)}, ${r.hashesChecked} hashes checked in ${seconds.toFixed(2)} s (${gbps(r.dataBytes, seconds).toFixed(2)} GB/s)`);
          }
        }
        if (!r.ok) throw verifyError(file, r.failures, r.problems, { reported: opts.json });
      } finally {
        await src.close();
      }
    });
}
