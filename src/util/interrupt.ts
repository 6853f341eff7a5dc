/**
 * Work to undo when the process is interrupted (SIGINT/SIGTERM) before it exits: abort an
 * S3 multipart upload, stop native threads, kill a bench's child process. Temporary local
 * files and directories are removed by the exit hook of util/tempfile.ts.
 */
const hooks = new Set<() => Promise<unknown>>();

/** Register `undo`; the returned function unregisters it (call it when the work is done). */
export function onInterrupt(undo: () => Promise<unknown>): () => void {
  hooks.add(undo);
  return () => hooks.delete(undo);
}

/** Run every registered hook, waiting at most `timeoutMs` for them. */
export async function runInterruptHooks(timeoutMs = 5000): Promise<void> {
  if (hooks.size === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.allSettled([...hooks].map((h) => h())), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
}
