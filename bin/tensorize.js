#!/usr/bin/env node
// Entry point of the `tensorize` command. The CLI is compiled to dist/ by `npm install`
// (the prepare script) or `npm run build`.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('tensorize: error: the CLI is not built (dist/ is missing)\n  hint: run `npm install` (or `npm run build`) in the tensorize directory\n');
  process.exit(1);
}
const { run, interrupted } = await import(main.href);
// On a signal, stop native threads and abort uploads first (temporary files are removed at
// exit); a second signal exits at once.
let stopping = false;
const onSignal = (code) => () => {
  if (stopping) process.exit(code);
  stopping = true;
  interrupted().finally(() => process.exit(code));
};
process.on('SIGINT', onSignal(130));
process.on('SIGTERM', onSignal(143));
process.exitCode = await run(process.argv.slice(2));
