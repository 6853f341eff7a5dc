/**
 * The scripts (scripts/**\/*.mjs) use the package as a user would (issue #14): of the built
 * package they import only its entry, dist/index.js, never a module inside it, so that the
 * modules can move without breaking a script nobody runs in the tests. Imports are read in
 * every form the scripts use: `import ... from`, `import '...'`, `import(...)` and
 * `require(...)` with a literal, a `join(root, 'dist', ...)` of literals, a template
 * literal or a `new URL(...)`, also inside a string handed to `node -e`. A path first built
 * into a variable is not seen.
 */
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import { ROOT } from './helpers/util.js';

const ENTRY = 'dist/index.js';

/** The path under dist/ that a module specifier (or the literals of a path expression, joined) names, if any. */
function distPath(path: string): string | undefined {
  const p = posix.normalize(path).replace(/^(\.\.?\/|\/)+/, '');
  return p.startsWith('dist/') ? p : undefined;
}

/** The text of the balanced parentheses that open at text[open]. */
function argumentAt(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '(') depth++;
    else if (text[i] === ')' && --depth === 0) return text.slice(open + 1, i);
  }
  return text.slice(open + 1);
}

/** The string literals of an expression, joined as path parts (template literals without their ${...} parts). */
function literalPath(expr: string): string {
  const parts: string[] = [];
  for (const m of expr.matchAll(/'([^'\n]*)'|"([^"\n]*)"|`([^`]*)`/g)) parts.push(m[1] ?? m[2] ?? (m[3] ?? '').replace(/\$\{[^}]*\}/g, ''));
  return parts.filter(Boolean).join('/');
}

/** Every dist/ path a script's text imports. */
export function distImports(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;'"]*?\bfrom\s+['"]([^'"]+)['"]|(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g)) {
    const p = distPath(m[1] ?? m[2]!);
    if (p) out.push(p);
  }
  for (const m of text.matchAll(/\b(?:import|require)\s*\(/g)) {
    const p = distPath(literalPath(argumentAt(text, m.index + m[0].length - 1)));
    if (p) out.push(p);
  }
  return out;
}

/** "script: dist/path" for each import of dist/ other than the package entry. */
export function internalImports(files: Map<string, string>): string[] {
  const bad: string[] = [];
  for (const [file, text] of files) for (const p of distImports(text)) if (p !== ENTRY) bad.push(`${file}: ${p}`);
  return bad.sort();
}

function scripts(dir: string, into = new Map<string, string>()): Map<string, string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) scripts(p, into);
    else if (/\.(mjs|cjs|js)$/.test(name)) into.set(relative(ROOT, p), readFileSync(p, 'utf8'));
  }
  return into;
}

t.test('scripts import nothing from dist/ but the package entry', async (t) => {
  const files = scripts(join(ROOT, 'scripts'));
  t.ok(files.size >= 5, `${files.size} scripts read`);
  t.same(internalImports(files), []);
  // The check reads the imports the scripts have (it is not passing because it sees none).
  const entry = [...files.values()].flatMap(distImports).filter((p) => p === ENTRY).length;
  t.ok(entry >= 4, `${entry} imports of ${ENTRY}`);
});

t.test('the check sees an import of a module inside dist/, in every form', async (t) => {
  for (const [line, path] of [
    ["import { load } from '../dist/ops/load.js';", 'dist/ops/load.js'],
    ["export { load } from '../../dist/ops/load.js';", 'dist/ops/load.js'],
    ["import '../dist/cli/main.js';", 'dist/cli/main.js'],
    ["const { native } = await import(join(root, 'dist/native/binding.js'));", 'dist/native/binding.js'],
    ["const { parseSize } = await import(join(ROOT, 'dist', 'cli', 'options.js'));", 'dist/cli/options.js'],
    ["const { verifyFile } = require(path.join(ROOT, 'dist', 'ops', 'verify.js'));", 'dist/ops/verify.js'],
    ['const bench = await import(`${root}/dist/bench/index.js`);', 'dist/bench/index.js'],
    ["const http = await import(new URL('../dist/sources/http.js', import.meta.url).href);", 'dist/sources/http.js'],
    ["execFileSync(process.execPath, ['-e', `import(${JSON.stringify(join(root, 'dist', 'native', 'binding.js'))}).then((m) => m.native())`]);", 'dist/native/binding.js'],
  ]) {
    t.same(internalImports(new Map([['scripts/x.mjs', `// a script\n${line}\n`]])), [`scripts/x.mjs: ${path}`], line);
  }
  for (const line of [
    "const { load } = await import(join(root, 'dist/index.js'));",
    "import { load } from '../dist/index.js';",
    "execFileSync(process.execPath, ['-e', `import(${JSON.stringify(join(root, 'dist', 'index.js'))}).then((m) => m.nativeInfo())`]);",
    "const { Agent } = await import('undici');",
    "if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) process.exit(2);",
  ]) {
    t.same(internalImports(new Map([['scripts/x.mjs', `${line}\n`]])), [], `fine: ${line}`);
  }
});
