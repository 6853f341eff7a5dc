/**
 * The layer rule (issue #14): a module imports only from its own layer or below. Layers,
 * bottom to top: errors and util; sources (bytes) and native (the one module that loads the
 * addon); format and inputs (parsing and planning, no I/O engine); engine (moving and hashing
 * bytes); operations (loader, outputs, the synthetic model); bench; cli; the package entry.
 * The imports that break the rule today are listed in KNOWN: the test fails when one is added
 * and when one is fixed without being struck from the list, so the list only shrinks.
 */
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { ROOT } from './helpers/util.js';

const LAYERS: Record<string, number> = {
  'errors.ts': 0,
  util: 0,
  sources: 1,
  native: 1,
  format: 2,
  inputs: 2,
  engine: 3,
  loader: 4,
  outputs: 4,
  'synthetic.ts': 4,
  bench: 5,
  cli: 6,
  'index.ts': 7,
};

// To be emptied by the rest of issue #14 (strike a line when its import goes).
const KNOWN = [
  'format/verify.ts -> engine/fetch.ts',
  'format/verify.ts -> engine/remote.ts',
  'format/verify.ts -> engine/runner.ts',
  'format/writer.ts -> engine/fetch.ts',
  'format/writer.ts -> engine/job.ts',
  'format/writer.ts -> engine/remote.ts',
  'format/writer.ts -> engine/runner.ts',
  'format/writer.ts -> outputs/s3upload.ts',
  'inputs/model.ts -> engine/job.ts',
  'inputs/pytorch/checkpoint.ts -> engine/view.ts',
];

/** Every relative import (static, re-export or dynamic, types included) of a module's text. */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;'"]*?\bfrom\s+['"](\.[^'"]+)['"]|\bimport\(\s*['"](\.[^'"]+)['"]\s*\)|(?:^|\n)\s*import\s+['"](\.[^'"]+)['"]/g)) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

const layerOf = (rel: string): string => rel.split('/')[0];

/** "a.ts -> b.ts" for each import of a higher layer, over the files given (path -> text, paths relative to src/). */
export function violations(files: Map<string, string>): string[] {
  const out = new Set<string>();
  for (const [file, text] of files) {
    for (const spec of importsOf(text)) {
      const target = normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts');
      const from = LAYERS[layerOf(file)];
      const to = LAYERS[layerOf(target)];
      if (from === undefined || to === undefined) throw new Error(`${file} -> ${target}: a folder with no layer (add it to LAYERS)`);
      if (to > from) out.add(`${file} -> ${target}`);
    }
  }
  return [...out].sort();
}

function sources(dir: string, into = new Map<string, string>()): Map<string, string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, into);
    else if (name.endsWith('.ts')) into.set(relative(join(ROOT, 'src'), p), readFileSync(p, 'utf8'));
  }
  return into;
}

t.test('no module imports a layer above its own, beyond the known list', async (t) => {
  const files = sources(join(ROOT, 'src'));
  t.ok(files.size > 40, `${files.size} modules read`);
  t.same(violations(files), [...KNOWN].sort());
});

t.test('the check sees an import of a higher layer, in every form', async (t) => {
  for (const line of [
    "import { load } from '../loader/load.js';",
    "import type { LoadOptions } from '../loader/load.js';",
    "export { load } from '../loader/load.js';",
    "const { load } = await import('../loader/load.js');",
    "import '../loader/load.js';",
  ]) {
    t.same(violations(new Map([['sources/file.ts', `// a source\n${line}\n`]])), ['sources/file.ts -> loader/load.ts'], line);
  }
  t.same(violations(new Map([['loader/load.ts', "import { x } from '../sources/file.js';\n"]])), [], 'importing below is fine');
});
