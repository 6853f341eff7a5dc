// How the CLI ends when it is cut short: Ctrl-C, SIGTERM, SIGHUP, and a reader that goes
// away (stdout or stderr closed: EPIPE, as with `| head`). Every way out exits with its own
// code, prints no stack trace, leaves no temporary directory (demo and bench make theirs
// under $TMPDIR, pointed here at a test directory) and no bench child process running.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { nativeAvailable } from '../src/native/binding.js';
import { VECTORS } from './helpers/util.js';
import { childrenOf, running, startCli, until } from './helpers/spawn.js';

const why = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';

/** Everything under `dir`, one level down included (a temporary model directory and its files). */
function leftovers(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String);
}

t.test('a closed stdout (EPIPE): exit 141, no stack trace, no error message', async (t) => {
  for (const args of [['help', 'load'], ['load', '--help'], ['info', join(VECTORS, 'dtypes_v1.tensors'), '--json']]) {
    const p = startCli(args, { closeStdout: true });
    t.same(await p.ended, { code: 141, signal: null }, `${args.join(' ')}: exit 141`);
    t.equal(p.stderr(), '', `${args.join(' ')}: nothing on stderr`);
  }
});

t.test('demo: Ctrl-C, SIGTERM and SIGHUP remove the synthetic model, exit 130, 143, 129', { skip: why }, async (t) => {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    const tmp = t.testdir();
    const p = startCli(['demo', '--size', '256MiB'], { env: { TMPDIR: tmp } });
    // Interrupt once the model is being written (its file exists in the temporary directory).
    const started = await until(() => leftovers(tmp).some((f) => f.endsWith('model.safetensors')));
    t.ok(started, `${signal}: the synthetic model was being written`, { stderr: p.stderr() });
    p.child.kill(signal);
    const end = await p.ended;
    t.same(end, { code, signal: null }, `${signal}: exit ${code}`, { stderr: p.stderr() });
    t.same(leftovers(tmp), [], `${signal}: nothing left in $TMPDIR`);
    t.notMatch(p.stderr(), /\n\s+at /, `${signal}: no stack trace`);
  }
});

t.test('bench: Ctrl-C while a run is in flight kills the run, removes the model, exit 130', { skip: why }, async (t) => {
  const tmp = t.testdir();
  const p = startCli(['bench', '--size', '64MiB', '--runs', '100', '--device', 'cpu'], { env: { TMPDIR: tmp } });
  let kids: number[] = [];
  const inFlight = await until(() => /interleaved/.test(p.stderr()) && (kids = childrenOf(p.pid)).length > 0);
  t.ok(inFlight, 'a benchmark child process was running', { stderr: p.stderr() });
  t.ok(leftovers(tmp).some((f) => f.endsWith('model.tensors')), 'the model is in $TMPDIR while bench runs');
  p.child.kill('SIGINT'); // the CLI alone, not its process group: it must stop its child itself
  const end = await p.ended;
  t.same(end, { code: 130, signal: null }, 'exit 130', { stderr: p.stderr() });
  t.same(leftovers(tmp), [], 'nothing left in $TMPDIR');
  t.ok(await until(() => kids.every((k) => !running(k)), 30_000), `the child process (${kids.join(', ')}) does not outlive bench`);
  t.notMatch(p.stderr(), /\n\s+at /, 'no stack trace');
  t.notMatch(p.stderr(), /unexpected error/, 'no unexpected error');
});

t.test('bench: a closed stderr stops it at the first progress line: exit 141, model removed', { skip: why }, async (t) => {
  const tmp = t.testdir();
  const p = startCli(['bench', '--size', '64MiB', '--runs', '2', '--device', 'cpu'], { env: { TMPDIR: tmp }, closeStderr: true });
  const end = await p.ended;
  t.same(end, { code: 141, signal: null });
  t.same(leftovers(tmp), [], 'nothing left in $TMPDIR');
  t.equal(p.stdout(), '', 'no table: it stopped before measuring');
});

t.test('bench: a closed stdout (the table, or --json) ends it with 141, quietly, model removed', { skip: why }, async (t) => {
  for (const json of [false, true]) {
    const tmp = t.testdir();
    const p = startCli(['bench', '--size', '16MiB', '--runs', '1', '--methods', 'plaid', '--device', 'cpu', ...(json ? ['--json'] : [])], { env: { TMPDIR: tmp }, closeStdout: true });
    const end = await p.ended;
    t.same(end, { code: 141, signal: null }, `--json ${json}: exit 141`, { stderr: p.stderr() });
    t.same(leftovers(tmp), [], 'nothing left in $TMPDIR');
    t.match(p.stderr(), /1 run of each/, 'it ran');
    t.notMatch(p.stderr(), /\n\s+at |unexpected error|EPIPE|tensorize: error/, 'no stack trace, no error message');
  }
});
