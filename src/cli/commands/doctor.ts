import { Command } from 'commander';
import { TensorizeError, type ErrorCode } from '../../errors.js';
import { nativeInfo } from '../../native/report.js';
import { formatBytes, printJson, report, type CommonOptions } from '../output.js';

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('show what the native addon was built with and what it finds here: CUDA toolkit, driver, GPUs (or why none), hash instructions, host memory settings')
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'print no report; only the exit code (and --json)')
    .addHelpText(
      'after',
      `
Exit 0 when the native addon loads (with or without a usable GPU), 1 when it cannot load:
then the report lists the fixes. Without a GPU, host-memory loads (--device cpu, --mmap)
still work; the report says why no device is usable (no driver, a driver older than the
CUDA runtime the addon was built with, no device, or an addon built without CUDA).`,
    )
    .action((opts: CommonOptions) => {
      const r = nativeInfo();
      if (opts.json) printJson({ ok: r.available, ...r });
      if (!opts.json && !opts.quiet) {
        const rows: [string, string][] = [
          ['native addon', r.available ? `loaded (${r.addonPath})` : `NOT AVAILABLE: ${r.error?.message}`],
          ['CUDA', r.compiledWithCuda ? `built with toolkit ${r.cudaToolkit}, runtime ${r.cudaRuntime}, driver ${r.cudaDriver === '0' ? 'none found' : r.cudaDriver}` : r.available ? 'not compiled in (host-only addon)' : '-'],
          ...r.devices.map((d): [string, string] => [`cuda:${d.index}`, `${d.name}, ${formatBytes(d.totalMemory)}, PCI ${d.pciBusId}`]),
          ...(r.available && r.devices.length === 0 ? ([['GPU', `none usable: ${r.noDeviceReason}`]] as [string, string][]) : []),
          ['hashes', r.hashImplementation ?? '-'],
          ['page mapping', r.populate === undefined ? '-' : r.populate ? 'MADV_POPULATE_READ/WRITE: --mmap maps pages in bulk, copies prefault theirs' : 'no MADV_POPULATE (Linux < 5.14): --mmap pages fault in on first use'],
          ['host', `${r.host.cpus} x ${r.host.cpuModel}, ${formatBytes(r.host.memoryBytes)} RAM, ${r.host.platform}-${r.host.arch} ${r.host.kernel}, Node ${r.host.node}`],
          ['huge pages', `${r.host.hugePages ? 'asked for' : 'not asked for'} in host-memory loads${r.host.freePageReporting ? ' (this VM hands free memory back to its host)' : ''}`],
        ];
        report(opts, rows.map(([k, v]) => `${k.padEnd(13)} ${v}`).join('\n'));
        if (r.available) for (const h of r.hints) report(opts, `  hint: ${h}`);
      }
      // The error and its fixes are printed once, by the CLI's error path.
      if (!r.available) throw new TensorizeError(r.error!.code as ErrorCode, r.error!.message, { hints: r.hints, reported: opts.json });
    });
}
