/** Option parsers shared by commands: they throw commander's InvalidArgumentError (exit 2). */
import { InvalidArgumentError } from 'commander';

export function parsePositiveInt(name: string, max = 1024): (v: string) => number {
  return (v: string) => {
    if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError(`${name} must be a positive integer`);
    const n = Number(v);
    if (n < 1 || n > max) throw new InvalidArgumentError(`${name} must be between 1 and ${max}`);
    return n;
  };
}

/** Sizes such as 1048576, 512k, 16MiB, 1.5G (binary multiples). */
export function parseSize(v: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b)?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`"${v}" is not a size (examples: 1048576, 16MiB, 1.5GiB)`);
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`size "${v}" is out of range`);
  return n;
}
