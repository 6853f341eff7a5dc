/**
 * The real tensorizer (and torch) the peer tests check tensorize against, installed by
 * scripts/peers/setup.sh: $TENSORIZE_PEER_PYTHON, else the venv it makes by default
 * ($TENSORIZE_PEERS_DIR or ~/.cache/tensorize/peers). The main version (the first
 * tensorizer pin of scripts/peers/requirements.txt) is the venv's own; each other pinned
 * version sits in <venv>/tensorizer-<version> and is put first on PYTHONPATH.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ROOT } from './util.js';

export const PEERS_SCRIPTS = join(ROOT, 'scripts', 'peers');
const INSTALL = 'install them with scripts/peers/setup.sh --apt (as root; or set TENSORIZE_PEER_PYTHON to a python with torch and tensorizer)';

export interface PeerVersion {
  version: string;
  /** Environment that makes `python` import this version. */
  env: Record<string, string>;
}

export interface Peer {
  python: string;
  versions: PeerVersion[];
  /** Pinned versions not found beside the venv. */
  missing: string[];
}

/** The peer, or why there is none (a skip reason that says how to install it). */
export function findPeer(): Peer | string {
  const dir = process.env.TENSORIZE_PEERS_DIR || join(homedir(), '.cache', 'tensorize', 'peers');
  const python = process.env.TENSORIZE_PEER_PYTHON || join(dir, 'bin', 'python');
  if (!existsSync(python)) return `the tensorizer peers are not installed (no ${python}): ${INSTALL}`;
  const pins = readFileSync(join(PEERS_SCRIPTS, 'requirements.txt'), 'utf8')
    .split('\n')
    .map((l) => /^tensorizer==(\S+)/.exec(l)?.[1])
    .filter((v): v is string => v !== undefined);
  const base = { PYTHONPATH: '', PYTHONDONTWRITEBYTECODE: '1' };
  const probe = spawnSync(python, ['-c', 'import torch, tensorizer; print(tensorizer.__version__)'], { encoding: 'utf8', env: { ...process.env, ...base } });
  if (probe.status !== 0) return `${python} cannot import torch and tensorizer (${probe.stderr.trim().split('\n').pop()}): ${INSTALL}`;
  const main = probe.stdout.trim();
  if (main !== pins[0]) return `${python} has tensorizer ${main}, not the pinned ${pins[0]}: ${INSTALL}`;
  const versions: PeerVersion[] = [{ version: main, env: base }];
  const missing: string[] = [];
  for (const v of pins.slice(1)) {
    const at = join(dirname(dirname(python)), `tensorizer-${v}`);
    if (existsSync(join(at, 'tensorizer'))) versions.push({ version: v, env: { ...base, PYTHONPATH: at } });
    else missing.push(v);
  }
  return { python, versions, missing };
}

/** Run a peer script (scripts/peers/<script>) with one tensorizer version. */
export function runPeer(peer: Peer, v: PeerVersion, script: string, args: string[]): SpawnSyncReturns<string> {
  return spawnSync(peer.python, [join(PEERS_SCRIPTS, script), ...args], { encoding: 'utf8', env: { ...process.env, ...v.env }, maxBuffer: 64 << 20 });
}
