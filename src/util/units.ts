/**
 * Byte sizes for people, in the binary units the options take (16MiB, 1GiB): every size a
 * report prints reads the same way as the option that set it. Rates stay in GB/s (10^9
 * bytes per second), as disk and network bandwidths are quoted.
 */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${n} B`;
  // Whole numbers stay whole (16 MiB, not 16.0 MiB); otherwise three significant digits.
  const s = Number.isInteger(v) ? String(v) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2);
  return `${s} ${units[i]}`;
}

/** GB/s (10^9 bytes per second); 0 for no time. */
export function gbps(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / seconds / 1e9 : 0;
}
