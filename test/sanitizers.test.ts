// The native test program (loader, copy engine, hashes, HTTP fetcher against its own
// fault-injecting server) built with AddressSanitizer + UBSan and with ThreadSanitizer, and
// run: any memory error, undefined behaviour, leak or data race fails (scripts/sanitize.sh).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './helpers/util.js';

const gxx = spawnSync('g++', ['--version'], { encoding: 'utf8' });
const why = gxx.status === 0 ? false : 'g++ is not installed (apt-get install g++)';

t.test('native code under AddressSanitizer, UBSan and ThreadSanitizer', { skip: why }, async (t) => {
  // No time limit of its own (a busy machine once took it past 280 s): tap's file timeout
  // (.taprc) guards a hang.
  const r = spawnSync('bash', [join(ROOT, 'scripts/sanitize.sh')], { encoding: 'utf8' });
  t.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  t.match(r.stdout, /^asan: exit 0, 0 sanitizer report\(s\), [0-9]+ passed, 0 failed$/m);
  t.match(r.stdout, /^tsan: exit 0, 0 sanitizer report\(s\), [0-9]+ passed, 0 failed$/m);
});
