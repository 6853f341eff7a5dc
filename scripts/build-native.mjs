#!/usr/bin/env node
// Build the native loader (native/ -> native/build/Release/tensorize_native.node) with
// cmake-js, offline (Node-API headers come from npm). Run by `npm install` (prepare) and
// `npm run build:native`. A failed build does not fail `npm install`: serialize, verify,
// info and export need no native code, and `tensorize load` then explains how to fix it.
// Set TENSORIZE_NATIVE_REQUIRED=1 to make a failed build an error (CI does), and
// TENSORIZE_CUDA=ON|OFF|AUTO to choose the CUDA path (default AUTO: built when a CUDA
// toolkit is found).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cmakeJs = join(dirname(createRequire(import.meta.url).resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const cuda = process.env.TENSORIZE_CUDA ?? 'AUTO';
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '-d', 'native', '--out', 'native/build', `--CDTENSORIZE_CUDA=${cuda}`], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'pipe'],
  encoding: 'utf8',
});
const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
const status = out.match(/tensorize: [^\n]*/)?.[0];
if (r.status === 0) {
  console.error(`native loader built (${status ?? 'see native/build'})`);
  process.exit(0);
}
console.error(out.split('\n').slice(-30).join('\n'));
console.error(
  [
    'tensorize: the native loader did not build; `tensorize load` will not work until it does.',
    '  fixes: install cmake >= 3.18 and a C++17 compiler (apt-get install cmake g++), then npm run build:native',
    '         for GPU loads, install the CUDA toolkit first (nvcc, cudart); TENSORIZE_CUDA=OFF builds host-only',
  ].join('\n'),
);
process.exit(process.env.TENSORIZE_NATIVE_REQUIRED === '1' ? 1 : 0);
