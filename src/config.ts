/**
 * Every TENSORIZE_* environment variable the TypeScript side reads, read in one place, once
 * (at first use, so a library user may set process.env before calling tensorize). The native
 * side reads its own once too (native/src/config.h). docs/environment.md lists them all.
 */

export interface Config {
  /** TENSORIZE_ENGINE: `js` forces the JavaScript copy engine, `native` requires the addon's. */
  engine?: 'js' | 'native';
  /** TENSORIZE_NET=js: network sources through undici instead of the native fetcher. */
  netJs: boolean;
  /** TENSORIZE_HUGEPAGES=1|on / 0|off: huge pages for host destinations (else decided by the machine). */
  hugePages?: boolean;
  /** TENSORIZE_NATIVE: the addon to load instead of the one built in native/build. */
  nativePath?: string;
  /** TENSORIZE_SIM_GPU is set: a simulated device was asked for (the native side reads its value). */
  simGpu: boolean;
  /** TENSORIZE_PEER_PYTHON: the Python with the peer loaders (`bench --peers`; default: the venv below, else python3). */
  peerPython?: string;
  /** TENSORIZE_PEERS_DIR: the peers' venv made by scripts/peers/setup.sh (default ~/.cache/tensorize/peers). */
  peersDir?: string;
  /** TENSORIZE_KEY: an encrypted file's 32-byte key, as 64 hexadecimal characters (or --key-file). */
  key?: string;
  /** TENSORIZE_PASSPHRASE: an encrypted file's passphrase (or --passphrase-file). */
  passphrase?: string;
}

/** The settings `env` gives. */
export function readConfig(env: NodeJS.ProcessEnv): Config {
  const e = env.TENSORIZE_ENGINE;
  const h = env.TENSORIZE_HUGEPAGES;
  return {
    engine: e === 'js' || e === 'native' ? e : undefined,
    netJs: env.TENSORIZE_NET === 'js',
    hugePages: h === '1' || h === 'on' ? true : h === '0' || h === 'off' ? false : undefined,
    nativePath: env.TENSORIZE_NATIVE || undefined,
    simGpu: Boolean(env.TENSORIZE_SIM_GPU),
    peerPython: env.TENSORIZE_PEER_PYTHON || undefined,
    peersDir: env.TENSORIZE_PEERS_DIR || undefined,
    key: env.TENSORIZE_KEY || undefined,
    passphrase: env.TENSORIZE_PASSPHRASE || undefined,
  };
}

let cached: Config | undefined;

/** This process's settings, read from the environment the first time they are asked for. */
export function config(): Config {
  return (cached ??= readConfig(process.env));
}

/** For tests that change process.env in-process: read it again at the next config(). */
export function reloadConfig(): void {
  cached = undefined;
}
