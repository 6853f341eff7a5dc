/** `tensorize bench` as a library: prepare a file, measure, render. */
export { runBench, runTask, summarize, filesystemOf, METHOD_IDS, DEFAULT_RUNS, EVICTION_TOLERANCE } from './run.js';
export type { BenchOptions, BenchResult, BenchEntry, CacheReport, ExtraMethod, Summary, BenchSourceKind } from './run.js';
export type { MethodId, Sample, Task, TaskId } from './measure.js';
export { prepareBenchSource, makeSyntheticModel, DEFAULT_BENCH_SIZE, type PreparedSource } from './prepare.js';
export { renderSvg, renderHtml, formatText, formatRate, tableRows, escapeXml } from './report.js';
export { evictFromPageCache, pageCacheResidency } from './cache.js';
