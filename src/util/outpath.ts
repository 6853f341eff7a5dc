/**
 * Where a command's output file goes, checked before any work: `-o` naming an existing
 * directory writes into it under the default name (as `cp` does), and an output that is one
 * of the inputs (the same path, a symlink to it, or a hard link) is refused, since writing it
 * would destroy the input.
 */
import { stat } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { usageError } from '../errors.js';

/**
 * `output`, or `<output>/<name>` when `output` is an existing directory. An output ending
 * in a slash must be an existing directory, and the directory a file goes into must not be
 * a file: both are usage errors here rather than a failed rename after all the work.
 */
export async function resolveOutput(output: string, name: string, flag = '-o'): Promise<string> {
  const st = await stat(output).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOTDIR' ? 'notdir' : undefined));
  if (st !== undefined && st !== 'notdir' && st.isDirectory()) return join(output, name);
  if (output.endsWith('/') || output.endsWith(sep)) {
    throw usageError(`${flag} ${output} names a directory, and ${st === undefined ? 'there is none' : 'it is not one'}`, ['create the directory first, or name the output file']);
  }
  let dir = dirname(output);
  // The nearest existing ancestor must be a directory (the missing ones are created).
  for (;;) {
    const d = await stat(dir).catch(() => undefined);
    if (d) {
      if (!d.isDirectory()) throw usageError(`${flag} ${output}: ${dir} is not a directory`);
      break;
    }
    if (dirname(dir) === dir) break;
    dir = dirname(dir);
  }
  return output;
}

/** Throw a usage error when `output` is the same file as one of the local `inputs`. */
export async function refuseOverwrite(output: string, inputs: readonly string[], flag = '-o'): Promise<void> {
  const out = await stat(output).catch(() => undefined);
  if (!out) return;
  if (out.isDirectory()) throw usageError(`${flag} ${output} is a directory`);
  for (const input of inputs) {
    const st = await stat(input).catch(() => undefined);
    if (st && st.dev === out.dev && st.ino === out.ino) {
      const how = input === output ? 'is the input' : `is the same file as the input ${input}`;
      throw usageError(`${flag} ${output} ${how}: writing it would destroy the input`, ['choose another output path']);
    }
  }
}
