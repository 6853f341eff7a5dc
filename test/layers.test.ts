/**
 * The layer rule (issue #14): a module imports only from its own layer or below. Layers,
 * bottom to top: errors, config and util; sources (bytes) and native (the one module that loads the
 * addon); format and inputs (parsing and planning, no I/O engine); engine (moving and hashing
 * bytes); operations (ops: serialize, verify, export, load, the synthetic model); bench; cli; the package entry.
 * Imports that break the rule would be listed in KNOWN (empty now): the test fails when one is added
 * and when one is fixed without being struck from the list, so the list only shrinks.
 */
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { ROOT } from './helpers/util.js';

const LAYERS: Record<string, number> = {
  'errors.ts': 0,
  'config.ts': 0,
  util: 0,
  sources: 1,
  native: 1,
  format: 2,
  inputs: 2,
  engine: 3,
  ops: 4,
  bench: 5,
  cli: 6,
  'index.ts': 7,
};

// Imports allowed against the rule: none. Keep it that way (strike a line when its import goes).
const KNOWN: string[] = [];

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
    "import { load } from '../ops/load.js';",
    "import type { LoadOptions } from '../ops/load.js';",
    "export { load } from '../ops/load.js';",
    "const { load } = await import('../ops/load.js');",
    "import '../ops/load.js';",
  ]) {
    t.same(violations(new Map([['sources/file.ts', `// a source\n${line}\n`]])), ['sources/file.ts -> ops/load.ts'], line);
  }
  t.same(violations(new Map([['ops/load.ts', "import { x } from '../sources/file.js';\n"]])), [], 'importing below is fine');
});

/** Imports of format/ modules that are not errors, format itself or the ByteSource interface, and node I/O modules. */
export function impurities(files: Map<string, string>): string[] {
  const allowed = (target: string) => target === 'errors.ts' || target === 'sources/source.ts' || target.startsWith('format/');
  const bad: string[] = [];
  for (const [file, text] of files) {
    if (!file.startsWith('format/')) continue;
    for (const spec of importsOf(text)) {
      const target = normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts');
      if (!allowed(target)) bad.push(`${file} -> ${target}`);
    }
    // No engine or file system of its own: bytes come through a ByteSource.
    for (const m of text.matchAll(/from\s+'node:(fs|fs\/promises|worker_threads|child_process|net|http|https)'/g)) bad.push(`${file} -> node:${m[1]}`);
  }
  return bad;
}

t.test('format/ is pure: it imports only errors, itself and the ByteSource interface', async (t) => {
  const files = sources(join(ROOT, 'src'));
  t.same(impurities(files), [], `${[...files.keys()].filter((f) => f.startsWith('format/')).length} format modules`);
  const bad = new Map([['format/x.ts', "import { readSync } from 'node:fs';\nimport { checkRange } from '../sources/source.js';\nimport { open } from '../sources/file.js';\nimport type { StreamJob } from '../engine/job.js';\n"]]);
  t.same(impurities(bad), ['format/x.ts -> sources/file.ts', 'format/x.ts -> engine/job.ts', 'format/x.ts -> node:fs'], 'the check sees them');
});

/** Reads of TENSORIZE_* variables outside src/config.ts: "file: NAME". */
export function envReads(files: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [file, text] of files) {
    if (file === 'config.ts') continue;
    for (const m of text.matchAll(/\benv(?:\.|\[['"])(TENSORIZE_\w+)/g)) out.push(`${file}: ${m[1]}`);
  }
  return out;
}

t.test('configuration is read in one place: only src/config.ts reads TENSORIZE_* variables', async (t) => {
  t.same(envReads(sources(join(ROOT, 'src'))), []);
  const bad = new Map([
    ['engine/x.ts', "const a = process.env.TENSORIZE_ENGINE;\nconst b = env['TENSORIZE_NET'];\n"],
    ['config.ts', 'const c = process.env.TENSORIZE_NATIVE;\n'],
  ]);
  t.same(envReads(bad), ['engine/x.ts: TENSORIZE_ENGINE', 'engine/x.ts: TENSORIZE_NET'], 'the check sees them');
});
