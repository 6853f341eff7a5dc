/** `tensorize bench` as a library: prepare a file, measure, render. */
export { runBench, filesystemOf } from './run.js';
export { runTask } from './task.js';
export { measure } from './measure.js';
export { summarize } from './summary.js';
export { METHOD_IDS, DEFAULT_RUNS, DEFAULT_BENCH_SIZE, EVICTION_TOLERANCE } from './types.js';
export type { BenchOptions, BenchResult, BenchEntry, CacheReport, ExtraMethod, Summary, BenchSourceKind, MethodId, Sample, Task, TaskId } from './types.js';
export { prepareBenchSource, makeSyntheticModel, type PreparedSource } from './prepare.js';
export { renderSvg, renderHtml, formatText, formatRate, tableRows, escapeXml } from './report.js';
export { evictFromPageCache, pageCacheResidency } from './cache.js';
