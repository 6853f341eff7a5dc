#!/usr/bin/env node
// Build the native loader (native/ -> native/build/Release/tensorize_native.node) with
// cmake-js, offline (Node-API headers come from npm). Run by `npm install` (prepare) and
// `npm run build:native`. A failed build does not fail `npm install`: serialize, verify,
// info and export need no native code, and `tensorize load` then explains how to fix it.
// Set TENSORIZE_NATIVE_REQUIRED=1 to make a failed build an error (CI does). No CUDA
// toolkit is needed: the GPU path calls the driver's libcuda.so.1, loaded at run time.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cmakeJs = join(dirname(createRequire(import.meta.url).resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '-d', 'native', '--out', 'native/build'], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'pipe'],
  encoding: 'utf8',
});
const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
if (r.status === 0) {
  console.error('native loader built (GPU path: the CUDA driver, loaded at run time)');
  process.exit(0);
}
console.error(out.split('\n').slice(-30).join('\n'));
console.error(
  [
    'tensorize: the native loader did not build; `tensorize load` will not work until it does.',
    '  fix: install cmake >= 3.18 and a C++17 compiler (apt-get install cmake g++), then npm run build:native',
  ].join('\n'),
);
process.exit(process.env.TENSORIZE_NATIVE_REQUIRED === '1' ? 1 : 0);
