/**
 * The `tensorize` command line. Commands live one per file in ./commands; this file wires
 * them up and owns the single place where errors become messages and exit codes:
 * 0 success, 1 failure (bad input, failed check), 2 usage error, 130 interrupted (143
 * SIGTERM, 129 SIGHUP), 141 stdout or stderr closed early (the last two: bin/tensorize.js).
 */
import { Command, CommanderError } from 'commander';
import { TensorizeError } from '../errors.js';
import { benchCommand } from './commands/bench.js';
import { demoCommand } from './commands/demo.js';
import { doctorCommand } from './commands/doctor.js';
import { exportCommand } from './commands/export.js';
import { infoCommand } from './commands/info.js';
import { loadCommand } from './commands/load.js';
import { serializeCommand } from './commands/serialize.js';
import { verifyCommand } from './commands/verify.js';
import { printJson } from './output.js';

import { cancelAllNative } from '../native/binding.js';
import { runInterruptHooks } from '../util/interrupt.js';

/** On SIGINT/SIGTERM, before exiting: stop native threads, abort uploads. */
export async function interrupted(): Promise<void> {
  await Promise.all([cancelAllNative(), runInterruptHooks()]);
}

let outputGone = false;

/**
 * stdout or stderr failed under us (EPIPE: the reader went away, as with `| head`): stop
 * the command as on Ctrl-C, and print nothing more, unless another error hit stdout.
 */
export async function outputFailed(e: NodeJS.ErrnoException | undefined, stream: 'stdout' | 'stderr'): Promise<void> {
  outputGone = true;
  if (e?.code !== 'EPIPE' && stream === 'stdout') process.stderr.write(`tensorize: error: cannot write to stdout: ${e?.message ?? String(e)}\n`);
  await interrupted();
}

export const VERSION = '0.1.0';

export function buildProgram(): Command {
  const program = new Command('tensorize')
    .description('convert model weights to the tensorizer single-file format, verify and inspect such files, and stream them into GPU memory')
    .version(VERSION)
    .option('--verbose', 'show stack traces on errors');
  for (const c of [serializeCommand(), verifyCommand(), infoCommand(), exportCommand(), loadCommand(), benchCommand(), demoCommand(), doctorCommand()]) {
    program.addCommand(c);
  }
  // Every command reports usage errors through an exception instead of exiting, and words
  // them as every other error: "tensorize: error: ...", then where the usage is.
  const override = (c: Command) => {
    const name = c === program ? 'tensorize' : `tensorize ${c.name()}`;
    c.exitOverride()
      .showHelpAfterError(`  hint: see ${name} --help`)
      .configureOutput({
        writeOut: (s) => process.stdout.write(s),
        writeErr: (s) => process.stderr.write(s),
        outputError: (s, write) => write(s.replace(/^error: /, 'tensorize: error: ')),
      });
    c.commands.forEach(override);
  };
  override(program);
  return program;
}

/** Run the CLI; resolves to the exit code (never calls process.exit itself). */
export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.every((a) => a === '--verbose')) {
    // No command: a usage error (exit 2), with the usage on stderr.
    process.stderr.write(`${program.helpInformation()}\ntensorize: error: no command given\n`);
    return 2;
  }
  const wantsJson = argv.includes('--json');
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (outputGone) return 1; // bin/tensorize.js exits with 141 (EPIPE) or 1, having said why
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      if (wantsJson) printJson({ ok: false, error: { code: 'E_USAGE', message: e.message.replace(/^error: /, '') } });
      return 2; // commander already printed the message on stderr
    }
    const err =
      e instanceof TensorizeError
        ? e
        : new TensorizeError('E_IO', `unexpected error: ${(e as Error)?.message ?? String(e)}`, { hints: ['run again with --verbose for details'] });
    if (wantsJson && !err.reported) printJson({ ok: false, error: { code: err.code, message: err.message, hints: err.hints } });
    process.stderr.write(`tensorize: error: ${err.message}\n`);
    for (const h of err.hints) process.stderr.write(`  hint: ${h}\n`);
    if (verbose) process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
    return err.exitCode;
  }
}
