/** Shared CLI plumbing: byte formatting, peak RSS, the progress bar, tables, JSON output. */
import cliProgress from 'cli-progress';

export interface CommonOptions {
  json?: boolean;
  quiet?: boolean;
}

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}

/** Peak resident set size of this process (all threads) in bytes, from getrusage. */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export function gbps(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / seconds / 1e9 : 0;
}

/** Everything human goes to stderr; stdout is reserved for --json. */
export function log(opts: CommonOptions, line: string): void {
  if (!opts.quiet && !opts.json) process.stderr.write(`${line}\n`);
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
