/**
 * Byte sizes for people, in the binary units the options take (16MiB, 1GiB): every size a
 * report prints reads the same way as the option that set it. Rates stay in GB/s (10^9
 * bytes per second), as disk and network bandwidths are quoted.
 */
import { TensorizeError } from '../errors.js';

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

/**
 * A size as the options take it: bytes (1048576) or binary multiples, the unit's B
 * optional (512k, 16MiB, 1.5G, 2TiB). Throws E_USAGE for anything else, or for a size that
 * is not a positive safe integer.
 */
export function parseSize(v: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b)?$/i.exec(v.trim());
  if (!m) throw new TensorizeError('E_USAGE', `"${v}" is not a size (examples: 1048576, 16MiB, 1.5GiB)`);
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n <= 0) throw new TensorizeError('E_USAGE', `size "${v}" is out of range`);
  return n;
}
