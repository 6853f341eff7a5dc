/**
 * The peer loaders of `tensorize bench --peers`: tensorizer, safetensors, Run:ai's Model
 * Streamer, fastsafetensors, InstantTensor and FlashPack, each run by the Python harness
 * scripts/peers/bench_peers.py in a fresh Python process per run, as extra methods of the
 * same interleaved rounds. Which Python: --python, else $TENSORIZE_PEER_PYTHON, else the venv
 * of scripts/peers/setup.sh when it exists, else python3. A peer asked for that cannot run
 * (not installed, no GPU, a source it cannot read) is listed with the reason, never dropped.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { config } from '../config.js';
import { TensorizeError } from '../errors.js';
import { sourceKind } from '../sources/open.js';
import { runChild } from './task.js';
import type { BenchResult, ExtraMethod, Sample } from './types.js';

export const PEER_IDS = ['tensorizer', 'safetensors', 'runai', 'fastsafetensors', 'instanttensor', 'flashpack'] as const;
export type PeerId = (typeof PEER_IDS)[number];

/** Each peer: what it is called, the call the harness times, and the pin to install (scripts/peers/requirements.txt). */
const PEERS: Record<PeerId, { name: string; call: string; pip: string; cudaOnly?: boolean }> = {
  tensorizer: { name: 'tensorizer', call: 'TensorDeserializer', pip: 'tensorizer==2.12.1' },
  safetensors: { name: 'safetensors', call: 'load_file', pip: 'safetensors==0.8.0' },
  runai: { name: 'Run:ai Model Streamer', call: 'SafetensorsStreamer', pip: 'runai-model-streamer==0.17.0 runai-model-streamer-s3==0.17.0' },
  fastsafetensors: { name: 'fastsafetensors', call: 'SafeTensorsFileLoader', pip: 'fastsafetensors==0.5.0' },
  instanttensor: { name: 'InstantTensor', call: 'safe_open', pip: 'instanttensor==0.2.2', cudaOnly: true },
  flashpack: { name: 'FlashPack', call: 'read_flashpack_file', pip: 'flashpack==0.4.5', cudaOnly: true },
};

/** What `bench_peers.py check` reports about one peer. */
export interface PeerCheck {
  version: string | null;
  /** Why it cannot run here; null when it can be imported. */
  why: string | null;
  /** The files it reads: `tensors` (tensorizer) or `safetensors`. */
  formats: string[];
  /** The remote sources it reads itself: `s3`, `http`. */
  remote: string[];
}

export interface PeerEnvironment {
  python: string;
  pythonVersion?: string;
  torch: string | null;
  cuda: boolean;
  peers: Partial<Record<PeerId, PeerCheck>>;
}

/** Parse a --peers value: a comma-separated list of PEER_IDS, or `all`. */
export function parsePeerList(v: string): PeerId[] {
  const list = v.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (list.length === 1 && list[0] === 'all') return [...PEER_IDS];
  const bad = list.filter((p) => !(PEER_IDS as readonly string[]).includes(p));
  if (list.length === 0 || bad.length) throw new TensorizeError('E_USAGE', `--peers takes a comma-separated list of ${PEER_IDS.join(', ')} (or all)${bad.length ? `, not ${bad.join(', ')}` : ''}`);
  return [...new Set(list)] as PeerId[];
}

/** The harness script: shipped in the package beside dist/. */
export function peerHarness(): string {
  const p = fileURLToPath(new URL('../../scripts/peers/bench_peers.py', import.meta.url));
  if (!existsSync(p)) throw new TensorizeError('E_IO', `the peer harness ${p} is missing`, { hints: ['reinstall tensorize: the package ships scripts/peers/bench_peers.py'] });
  return p;
}

/** The Python to run the peers with: `given`, else $TENSORIZE_PEER_PYTHON, else the setup.sh venv when it exists, else python3. */
export function peerPython(given?: string): string {
  if (given) return given;
  const c = config();
  if (c.peerPython) return c.peerPython;
  const venv = join(c.peersDir ?? join(homedir(), '.cache', 'tensorize', 'peers'), 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

const lastLine = (s: string) => s.trim().split('\n').pop() ?? '';
const tail = (s: string) => s.trim().split('\n').slice(-3).join(' / ');

/** Ask the harness which peers this Python can run (one short process). */
export async function checkPeers(python: string): Promise<PeerEnvironment> {
  const harness = peerHarness();
  const r = await runChild(python, [harness, 'check'], '').catch((e: Error) => ({ status: -1, out: '', err: e.message, killed: false }));
  if (r.killed) throw new TensorizeError('E_INTERRUPTED', 'interrupted');
  try {
    if (r.status === 0) return { ...(JSON.parse(lastLine(r.out)) as PeerEnvironment), python };
  } catch {
    /* reported below */
  }
  const why = `${python} cannot run the peer harness (${r.status === -1 ? r.err : `exit ${r.status}${r.err.trim() ? `: ${tail(r.err)}` : ''}`}); give --python a Python with torch and the peers, or make one with scripts/peers/setup.sh`;
  return { python, torch: null, cuda: false, peers: Object.fromEntries(PEER_IDS.map((id) => [id, { version: null, why, formats: [], remote: [] }])) };
}

export interface PeerPlanOptions {
  ids: readonly PeerId[];
  env: PeerEnvironment;
  /** The .tensors file or URL the bench measures (tensorizer reads it). */
  tensors: string;
  /** The same tensors as .safetensors (file or URL), for the other peers; undefined: none. */
  safetensors?: string;
  /** Why there is no .safetensors form, when there is none. */
  noSafetensors?: string;
  /** The bench's device: `cpu` or `cuda:N`, and whether that is a simulated GPU. */
  target: string;
  simulated: boolean;
  /** Environment for the peers' processes (S3 endpoint and credentials). */
  childEnv?: NodeJS.ProcessEnv;
}

/** Why peer `id` cannot run here whatever file it is given, or undefined. */
function unfit(id: PeerId, o: Pick<PeerPlanOptions, 'env' | 'target' | 'simulated'>): string | undefined {
  const p = PEERS[id];
  const c = o.env.peers[id];
  const install = `(install: pip install ${p.pip}, or scripts/peers/setup.sh)`;
  if (!c) return `${o.env.python}: the harness does not know it ${install}`;
  if (c.why) return /pip install|setup\.sh|cannot run the peer harness/.test(c.why) || c.version ? c.why : `${c.why} ${install}`;
  if (o.simulated && o.target !== 'cpu') return `the bench loads onto a simulated GPU (TENSORIZE_SIM_GPU), which peers cannot use; add --device cpu`;
  if (o.target !== 'cpu' && !o.env.cuda) return `${o.env.python}'s torch ${o.env.torch ?? ''} sees no CUDA device`;
  if (o.target === 'cpu' && p.cudaOnly) return `it loads onto CUDA devices only, and this bench loads into host memory`;
  return undefined;
}

/** Whether any of `ids` can run here and reads .safetensors (so that the bench needs that form). */
export function peersWantSafetensors(o: Pick<PeerPlanOptions, 'ids' | 'env' | 'target' | 'simulated'>): boolean {
  return o.ids.some((id) => !unfit(id, o) && o.env.peers[id]?.formats.includes('safetensors'));
}

/** Each peer asked for as an extra method of the bench, or skipped with the reason. */
export function planPeers(o: PeerPlanOptions): { methods: ExtraMethod[]; skipped: BenchResult['skipped'] } {
  const methods: ExtraMethod[] = [];
  const skipped: BenchResult['skipped'] = [];
  const harness = peerHarness();
  for (const id of o.ids) {
    const p = PEERS[id];
    const c = o.env.peers[id];
    const label = `${p.name}${c?.version ? ` ${c.version}` : ''} ${p.call}`;
    const file = c?.formats.includes('tensors') ? o.tensors : o.safetensors;
    const kind = file ? sourceKind(file) : 'file';
    let why = unfit(id, o);
    if (why || !c) {
      /* reported below */
    } else if (!file) why = o.noSafetensors ?? 'no .safetensors file of the same tensors';
    else if (kind !== 'file' && !c.remote.includes(kind)) why = `it reads ${c.remote.length ? `local files and ${c.remote.join(', ')}` : 'local files only'}, not ${kind === 's3' ? 's3://' : 'http(s)://'} sources`;
    if (why || !file) {
      skipped.push({ id, label, reason: why ?? 'no file' });
      continue;
    }
    methods.push({
      id,
      label,
      command: `${o.env.python} ${harness} run ${id} ${file} --device ${o.target}`,
      ...(kind === 'file' ? { file } : {}),
      run: (device) => runPeer(o.env.python, harness, id, file, device, o.childEnv),
    });
  }
  return { methods, skipped };
}

/** One timed load by a peer, in a fresh Python process. */
async function runPeer(python: string, harness: string, id: PeerId, file: string, device: string, env?: NodeJS.ProcessEnv): Promise<Sample> {
  const r = await runChild(python, [harness, 'run', id, file, '--device', device], '', env);
  if (r.killed) throw new TensorizeError('E_INTERRUPTED', 'interrupted');
  let d: { seconds?: number; bytes?: number; firstTensorMs?: number | null; peakRssBytes?: number; baseRssBytes?: number } | undefined;
  try {
    d = r.status === 0 ? (JSON.parse(lastLine(r.out)) as typeof d) : undefined;
  } catch {
    d = undefined;
  }
  if (!d || typeof d.seconds !== 'number' || typeof d.bytes !== 'number' || !(d.seconds > 0)) {
    throw new TensorizeError('E_IO', `the ${PEERS[id].name} peer ended with ${typeof r.status === 'number' ? `exit code ${r.status}` : r.status}${r.err.trim() ? `: ${tail(r.err)}` : ''}`);
  }
  return {
    seconds: d.seconds,
    bytes: d.bytes,
    gbPerSecond: d.bytes / d.seconds / 1e9,
    ...(typeof d.firstTensorMs === 'number' ? { firstTensorMs: d.firstTensorMs } : {}),
    ...(typeof d.peakRssBytes === 'number' ? { peakRssBytes: d.peakRssBytes } : {}),
    ...(typeof d.baseRssBytes === 'number' ? { baseRssBytes: d.baseRssBytes } : {}),
  };
}

/**
 * The environment of the peers' processes for an s3:// source: the endpoint, region and
 * credentials tensorize itself resolved (options, environment, ~/.s3cfg, the AWS chain), as
 * the standard AWS variables, so every peer reads the same bucket as the same user.
 */
export async function s3PeerEnv(s3: import('../sources/s3.js').S3Options | undefined): Promise<NodeJS.ProcessEnv> {
  const { makeS3Client } = await import('../sources/s3.js');
  const { client, endpoint } = makeS3Client(s3);
  const env: NodeJS.ProcessEnv = { ...process.env };
  try {
    if (endpoint) env.AWS_ENDPOINT_URL = env.AWS_ENDPOINT_URL_S3 = endpoint;
    env.AWS_REGION = env.AWS_DEFAULT_REGION = await client.config.region();
    if (s3?.anonymous) {
      // Unsigned, as tensorize reads: no credentials of the user's for the peers to sign with.
      for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE']) delete env[k];
      env.AWS_NO_SIGN_REQUEST = 'true';
    } else {
      const c = await client.config.credentials();
      env.AWS_ACCESS_KEY_ID = c.accessKeyId;
      env.AWS_SECRET_ACCESS_KEY = c.secretAccessKey;
      if (c.sessionToken) env.AWS_SESSION_TOKEN = c.sessionToken;
      else delete env.AWS_SESSION_TOKEN;
    }
  } catch (e) {
    throw new TensorizeError('E_IO', `the peers need S3 credentials: ${(e as Error).message}`);
  } finally {
    client.destroy();
  }
  return env;
}
