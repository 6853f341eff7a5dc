import { Command } from 'commander';
import { TensorizeError, type ErrorCode } from '../../errors.js';
import { nativeInfo } from '../../native/report.js';
import { formatBytes, printJson, report, type CommonOptions } from '../output.js';

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('show what the native addon finds here: the GPU backend (the NVIDIA driver, simulated, or why none), GPUs, hash instructions, host memory settings')
    .option('--json', 'print one JSON document on stdout')
    .option('-q, --quiet', 'print no report; only the exit code (and --json)')
    .addHelpText(
      'after',
      `
Exit 0 when the native addon loads (with or without a usable GPU), 1 when it cannot load:
then the report lists the fixes. GPU loads call the NVIDIA driver (libcuda.so.1) directly,
loaded at run time: no CUDA toolkit or runtime is needed, and any driver of CUDA 10 or
later works. Without a GPU, host-memory loads (--device cpu, --mmap) still work; the report
says why no device is usable (no NVIDIA driver found, a driver too old, no device).
TENSORIZE_SIM_GPU=N replaces the GPU by N simulated devices (a CPU stand-in for tests and
CI, never chosen on its own); the report then says "simulated".`,
    )
    .action((opts: CommonOptions) => {
      const r = nativeInfo();
      if (opts.json) printJson({ ok: r.available, ...r });
      if (!opts.json && !opts.quiet) {
        const rows: [string, string][] = [
          ['native addon', r.available ? `loaded (${r.addonPath})` : `NOT AVAILABLE: ${r.error?.message}`],
          ['GPU backend', !r.available ? '-' : r.backend === 'simulated' ? 'simulated (TENSORIZE_SIM_GPU): a CPU stand-in for tests, not a GPU' : r.backend === 'cuda' ? `the NVIDIA driver (libcuda, CUDA ${r.cudaDriver})` : `none${r.cudaDriver ? ` (driver supports CUDA ${r.cudaDriver})` : ''}`],
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
