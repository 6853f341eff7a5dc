/**
 * Progress of a native run, polled in one place: the native side keeps a running total of
 * bytes done (native().progress(handle)); callers are told the increments, every 100 ms and
 * once more when the run ends.
 */

/** Poll `read()` (a running total) every 100 ms and report increments; the returned stop() reports the rest. */
export function pollProgress(read: () => number, onProgress: ((bytes: number) => void) | undefined): () => void {
  if (!onProgress) return () => {};
  let reported = 0;
  const tick = () => {
    const now = read();
    if (now > reported) onProgress(now - reported);
    reported = Math.max(reported, now);
  };
  const timer = setInterval(tick, 100);
  return () => {
    clearInterval(timer);
    tick();
  };
}
