/**
 * One list of error codes: native/src/errors.h (TZ_ERROR_CODES, the enum every native Error
 * carries) and src/errors.ts (ERROR_CODES, the codes TensorizeError may have) name the same
 * codes in the same order, and the built addon carries that list.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES } from '../src/errors.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { ROOT } from './helpers/util.js';

/** The names in the TZ_ERROR_CODES X-macro of errors.h. */
export function nativeCodeNames(header: string): string[] {
  const m = /#define TZ_ERROR_CODES\(X\)((?:[^\n]*\\\n)*[^\n]*)/.exec(header);
  if (!m) throw new Error('no TZ_ERROR_CODES in errors.h');
  return [...m[1].matchAll(/X\((E_[A-Z_]+)\)/g)].map((x) => x[1]);
}

t.test('native/src/errors.h and src/errors.ts list the same codes', async (t) => {
  const names = nativeCodeNames(readFileSync(join(ROOT, 'native/src/errors.h'), 'utf8'));
  t.ok(names.length >= 20, `${names.length} codes parsed from errors.h`);
  t.same(names, [...ERROR_CODES]);
});

t.test('the parser sees a code added to one list only', async (t) => {
  const header = readFileSync(join(ROOT, 'native/src/errors.h'), 'utf8').replace('  X(E_NATIVE)', '  X(E_NATIVE)                                                                              \\\n  X(E_EXTRA)');
  t.not(JSON.stringify(nativeCodeNames(header)), JSON.stringify([...ERROR_CODES]));
});

t.test('the built addon carries the same list', { skip: nativeAvailable() ? false : 'the native addon is not built (npm run build:native)' }, async (t) => {
  t.same(native().errorCodes, [...ERROR_CODES]);
});
