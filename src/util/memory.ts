/**
 * Whether host-memory destinations should ask for transparent huge pages.
 *
 * Huge pages make a fresh destination cost one page fault per 2 MiB instead of per 4 KiB
 * (on the reference machine: 3.2 -> 9.9 GB/s for a load into host memory). But a VM whose
 * balloon device reports free memory back to its host (virtio-balloon free page
 * reporting, which works on 2 MiB blocks) must have the host back each fresh huge page
 * again first: there a load in a fresh process ran at 0.74-0.84 GB/s with huge pages and
 * 3.61-3.97 GB/s without (2026-12-01). So: on by default, off on such VMs;
 * TENSORIZE_HUGEPAGES=1 or 0 decides instead. (On 2026-12-05 the same VM was, for a while,
 * slow for fresh memory either way and huge pages helped: docs/benchmarks.md, Peers.)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { config } from '../config.js';

/** A virtio balloon device with free page reporting (feature bit 5) is present. */
export function freePageReporting(): boolean {
  const dir = '/sys/bus/virtio/drivers/virtio_balloon';
  try {
    return readdirSync(dir)
      .filter((d) => d.startsWith('virtio'))
      .some((d) => readFileSync(`${dir}/${d}/features`, 'utf8')[5] === '1');
  } catch {
    return false;
  }
}

export function hugePagesByDefault(): boolean {
  return config().hugePages ?? !freePageReporting();
}
