#!/usr/bin/env node
// Entry point of the `tensorize` command. The CLI is compiled to dist/ by `npm install`
// (the prepare script) or `npm run build`.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('tensorize: error: the CLI is not built (dist/ is missing)\n  hint: run `npm install` (or `npm run build`) in the tensorize directory\n');
  process.exit(1);
}
const { run, interrupted, outputFailed } = await import(main.href);
// On a signal, stop native threads, child processes and uploads first (temporary files and
// directories are removed at exit); a second signal exits at once. A closed stdout or
// stderr (EPIPE: `tensorize ... | head`) stops the command the same way, silently, with
// exit code 141: what a shell reports for a process killed by SIGPIPE.
let stopping = false;
const stop = (code, undo) => {
  if (stopping) return;
  stopping = true;
  process.exitCode = code;
  undo().finally(() => process.exit(code));
};
const onSignal = (code) => () => (stopping ? process.exit(code) : stop(code, interrupted));
process.on('SIGINT', onSignal(130));
process.on('SIGTERM', onSignal(143));
process.on('SIGHUP', onSignal(129));
for (const [name, stream] of [['stdout', process.stdout], ['stderr', process.stderr]]) {
  stream.on('error', (e) => stop(e?.code === 'EPIPE' ? 141 : 1, () => outputFailed(e, name)));
}
const code = await run(process.argv.slice(2));
if (!stopping) process.exitCode = code;
