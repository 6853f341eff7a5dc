/**
 * Where a tensor's bytes are (SourceData: ranges of a file, or a strided view), and how a
 * tensor view becomes one. Planning only: the engine reads them (engine/job.ts).
 *
 * viewSource turns a tensor view (storage offset, size and stride in elements, as torch records them)
 * into a SourceData: one range when the view is contiguous, a list of ranges when its rows
 * are contiguous runs, and a strided view for the job to gather otherwise.
 */

export interface Range {
  offset: number;
  length: number;
}

/**
 * A strided view of a file: element i (multi-index) is at `offset + sum(i[d] * strides[d]) * itemsize`.
 * Gathered into contiguous row-major bytes by the job.
 */
export interface StridedView {
  offset: number;
  itemsize: number;
  shape: number[];
  /** In elements. */
  strides: number[];
}

/** Where a tensor's bytes are: ranges concatenated in order, or (when `view` is set, with no ranges) a strided view. */
export interface SourceData {
  path: string;
  ranges: Range[];
  view?: StridedView;
  /** Byte-swap every group of this many bytes (a big-endian input); 1 or absent means as-is. */
  swap?: number;
}

/** How many bytes a SourceData yields. */
export function sourceBytes(d: SourceData): number {
  if (d.view) return d.view.shape.reduce((a, n) => a * n, d.view.itemsize);
  return d.ranges.reduce((n, r) => n + r.length, 0);
}

/** Runs shorter than this are gathered rather than read one by one. */
const MIN_RUN_BYTES = 4096;
const MAX_RUNS = 65536;

export function viewSource(
  path: string,
  /** Byte offset of the storage's element 0 in the file. */
  base: number,
  itemsize: number,
  offset: number,
  shape: readonly number[],
  stride: readonly number[],
  swap?: number,
): SourceData {
  const swapOpt = swap && swap > 1 ? { swap } : {};
  const start = base + offset * itemsize;
  if (shape.some((n) => n === 0)) return { path, ranges: [], ...swapOpt };
  // Drop size-1 dimensions and merge dimensions that are contiguous with the next one.
  const dims: { size: number; stride: number }[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    const size = shape[d]!;
    if (size === 1) continue;
    const inner = dims[0];
    if (inner && stride[d] === inner.stride * inner.size) inner.size *= size;
    else dims.unshift({ size, stride: stride[d]! });
  }
  if (dims.length === 0) return { path, ranges: [{ offset: start, length: itemsize }], ...swapOpt };
  const last = dims[dims.length - 1]!;
  if (last.stride === 1) {
    const runBytes = last.size * itemsize;
    const outer = dims.slice(0, -1);
    const runs = outer.reduce((a, d) => a * d.size, 1);
    if (runs === 1) return { path, ranges: [{ offset: start, length: runBytes }], ...swapOpt };
    if (runBytes >= MIN_RUN_BYTES && runs <= MAX_RUNS) {
      const ranges: Range[] = [];
      const idx = new Array<number>(outer.length).fill(0);
      for (let r = 0; r < runs; r++) {
        let o = 0;
        for (let d = 0; d < outer.length; d++) o += idx[d]! * outer[d]!.stride;
        ranges.push({ offset: start + o * itemsize, length: runBytes });
        let d = outer.length - 1;
        while (d >= 0 && ++idx[d]! === outer[d]!.size) idx[d--] = 0;
      }
      return { path, ranges, ...swapOpt };
    }
  }
  return {
    path,
    ranges: [],
    view: { offset: start, itemsize, shape: dims.map((d) => d.size), strides: dims.map((d) => d.stride) },
    ...swapOpt,
  };
}
