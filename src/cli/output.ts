/** Shared CLI plumbing: byte formatting, peak RSS, the progress bar, tables, JSON output. */
import cliProgress from 'cli-progress';
import { formatBytes } from '../util/units.js';

export { formatBytes };

export interface CommonOptions {
  json?: boolean;
  quiet?: boolean;
}

/** Peak resident set size of this process (all threads) in bytes, from getrusage. */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export function gbps(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / seconds / 1e9 : 0;
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

/** Left-aligned text table; numeric columns are right-aligned. */
export function table(headers: string[], rows: string[][], numeric: Set<number> = new Set()): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [fmt(headers), fmt(widths.map((w) => '-'.repeat(w))), ...rows.map(fmt)].join('\n');
}
