/** Shared CLI plumbing: byte formatting, peak RSS, the progress bar, tables, JSON output. */
import cliProgress from 'cli-progress';
import { formatBytes, gbps } from '../util/units.js';
import { table } from '../util/table.js';

export { formatBytes, gbps, table };

export interface CommonOptions {
  json?: boolean;
  quiet?: boolean;
}

/** Peak resident set size of this process (all threads) in bytes, from getrusage. */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/**
 * Progress and logs: stderr, never with --quiet or --json. Results (tables, reports, the
 * summary of what was done) go to stdout through report(); warnings to stderr through warn().
 */
export function log(opts: CommonOptions, line: string): void {
  if (!opts.quiet && !opts.json) process.stderr.write(`${line}\n`);
}

/** A command's result for people (a table, a report, what was written): stdout, not with --quiet or --json (which prints its own document). */
export function report(opts: CommonOptions, text: string): void {
  if (!opts.quiet && !opts.json) result(`${text}\n`);
}

/** Write result text to stdout as it is. */
export function result(text: string): void {
  process.stdout.write(text);
}

export function warn(opts: CommonOptions, line: string): void {
  if (!opts.quiet) process.stderr.write(`warning: ${line}\n`);
}

export function printJson(doc: unknown): void {
  process.stdout.write(`${JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
}

/** A byte progress bar on stderr, shown only on a terminal and never with --json/--quiet. */
export class Progress {
  private bar?: cliProgress.SingleBar;
  private done = 0;
  private readonly t0 = performance.now();
  constructor(opts: CommonOptions, label: string) {
    if (!opts.json && !opts.quiet && process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: `${label} [{bar}] {percentage}% | {done} of {all} | {rate}`,
          hideCursor: true,
          clearOnComplete: true,
        },
        cliProgress.Presets.shades_classic,
      );
    }
  }
  start = (total: number): void => {
    this.bar?.start(Math.max(total, 1), 0, { done: formatBytes(0), all: formatBytes(total), rate: '' });
  };
  add = (n: number): void => {
    this.done += n;
    const s = (performance.now() - this.t0) / 1000;
    this.bar?.update(this.done, { done: formatBytes(this.done), rate: `${gbps(this.done, s).toFixed(2)} GB/s` });
  };
  stop(): void {
    this.bar?.stop();
  }
}
