/**
 * What `tensorize bench` shows: the table (stdout, and in the HTML report), and the chart:
 * one bar per method at its median GB/s with min-max whiskers, the ceilings drawn as
 * lines (the one results are held against in red), as a self-contained SVG, or an HTML
 * page holding the SVG, the table and the notes (no scripts, no external fonts or files).
 */
import { table } from '../util/table.js';
import { formatBytes } from '../util/units.js';
import type { BenchEntry, BenchResult, Summary } from './types.js';

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const fix = (x: number, d = 2) => x.toFixed(d);
/** GB/s with two decimals, or two significant digits below 0.1 (tiny files). */
export const formatRate = (x: number): string => (x >= 0.1 || x === 0 ? x.toFixed(2) : x.toPrecision(2));
const pct = (f: number | undefined) => (f === undefined ? '-' : `${Math.round(f * 100)}%`);

/** A probe is steady when its runs spread (max - min) over at most this fraction of its median. */
export const STEADY_SPREAD = 0.5;

/** (max - min) / median: 0 for a single run. */
export function spreadOf(g: Summary): number {
  return g.median > 0 ? (g.max - g.min) / g.median : 0;
}

/** Marks --mmap's "of ceiling" cell, pointing at the footnote that says why it can pass 100%. */
export const MMAP_MARK = '\u2020';
const MMAP_FOOTNOTE = `${MMAP_MARK} --mmap can exceed 100% of the ceiling: it maps the file's cached pages into the process without copying them, while the ceiling is a read that copies every byte.`;

function machineLine(r: BenchResult): string {
  const m = r.machine;
  return `${m.cpus} x ${m.cpuModel}, ${formatBytes(m.memoryBytes)} RAM, ${m.os}, Node ${m.node}`;
}

/** One line saying what was measured. */
export function headline(r: BenchResult): string {
  const s = r.source;
  const what = s.kind === 'synthetic' ? s.input : s.kind === 'converted' ? `${s.input} (converted to ${s.file})` : s.file;
  return `${what}: ${formatBytes(s.tensorBytes)} of tensor data in ${s.tensors} tensors (file ${formatBytes(s.fileBytes)}${s.filesystem ? `, on ${s.filesystem}` : ''})`;
}

export interface Rows {
  headers: string[];
  rows: string[][];
  numeric: Set<number>;
}

/** The results table: ceilings first, then the methods, best first within each. */
export function tableRows(r: BenchResult): Rows {
  const row = (e: BenchEntry): string[] => [
    e.role === 'ceiling' ? (e.id === r.ceiling.id ? 'ceiling *' : 'ceiling') : e.role === 'peer' ? 'peer' : '',
    e.label,
    formatRate(e.gbPerSecond.median),
    `${formatRate(e.gbPerSecond.min)}-${formatRate(e.gbPerSecond.max)}`,
    e.id === 'mmap' ? `${pct(e.fractionOfCeiling)} ${MMAP_MARK}` : pct(e.fractionOfCeiling),
    e.firstTensorMs ? `${fix(e.firstTensorMs.median, 1)} ms` : '-',
    `${fix(e.seconds.median, 3)} s`,
    e.peakRssBytes ? formatBytes(e.peakRssBytes) : '-',
  ];
  const byRate = (a: BenchEntry, b: BenchEntry) => b.gbPerSecond.median - a.gbPerSecond.median;
  return {
    headers: ['', 'method', 'GB/s', 'min-max', 'of ceiling', 'first tensor', 'time', 'peak RSS'],
    rows: [...[...r.ceilings].sort(byRate).map(row), ...[...r.methods].sort(byRate).map(row), ...r.skipped.map((s) => ['', s.label, 'skipped', '', '', '', '', ''])],
    numeric: new Set([2, 3, 4, 5, 6, 7]),
  };
}

/** Footnotes under the table: what the ceiling is and why, how steady it was, why --mmap can pass it. */
function footnotes(r: BenchResult): string[] {
  const out = [`* ceiling: ${r.ceiling.label}, ${formatRate(r.ceiling.gbPerSecond)} GB/s${r.ceiling.reason ? ` (${r.ceiling.reason})` : ''}; "of ceiling" is each median over it`];
  const c = r.ceilings.find((x) => x.id === r.ceiling.id);
  if (c && c.samples.length > 1 && spreadOf(c.gbPerSecond) > STEADY_SPREAD) {
    out.push(`  its runs spread from ${formatRate(c.gbPerSecond.min)} to ${formatRate(c.gbPerSecond.max)} GB/s: the fractions of it are rough (more --runs, or a quieter machine, narrow it)`);
  }
  if (r.methods.some((m) => m.id === 'mmap')) out.push(MMAP_FOOTNOTE);
  return out;
}

/** The report as text: the table and what it needs to be read (stdout in the CLI). */
export function formatText(r: BenchResult): string {
  const t = tableRows(r);
  return [
    `tensorize bench: ${headline(r)}`,
    r.device.description,
    r.cache.message,
    `machine: ${machineLine(r)}`,
    `${r.runs} run${r.runs > 1 ? 's' : ''} per method, interleaved; GB/s = 10^9 bytes of tensor data per second (median, min-max)`,
    '',
    table(t.headers, t.rows, t.numeric),
    '',
    ...footnotes(r),
    ...r.skipped.map((s) => `skipped: ${s.label}: ${s.reason}`),
  ].join('\n');
}

/** A round axis maximum and tick step for values up to `v`. */
function axis(v: number): { max: number; step: number } {
  if (!(v > 0)) return { max: 1, step: 0.2 };
  const raw = v / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  return { max: Math.ceil(v / step) * step, step };
}

/** Break a label into lines of at most `width` characters, at spaces. */
function wrap(s: string, width: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const w of s.split(' ')) {
    if (cur && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = w;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) lines.push(cur);
  return lines;
}

const yOf = (v: number, max: number, top: number, plotH: number) => top + plotH - (v / max) * plotH;

/** Text extends about this much of its font size above its baseline, and this much below. */
export const ASCENT = 0.8;
export const DESCENT = 0.25;
/** From the value label's baseline to the fraction label's; the clearance kept from a ceiling line. */
const LABEL_GAP = 14;
const CLEARANCE = 3;

/**
 * The baselines of each bar's value label (12px, with the 11px fraction label LABEL_GAP
 * below it) so that neither crosses a ceiling line: 22px above the whisker, then moved up
 * above each line the pair would touch. Undefined when a pair would reach the title lines.
 */
function layoutBarLabels(bars: readonly BenchEntry[], ceilings: readonly number[], max: number, top: number, plotH: number): number[] | undefined {
  const lineYs = ceilings.map((v) => yOf(v, max, top, plotH));
  const out: number[] = [];
  for (const b of bars) {
    let base = yOf(Math.max(b.gbPerSecond.median, b.gbPerSecond.max), max, top, plotH) - 22;
    for (;;) {
      const boxTop = base - 12 * ASCENT - CLEARANCE;
      const boxBottom = base + LABEL_GAP + 11 * DESCENT + CLEARANCE;
      const hit = lineYs.find((ly) => ly >= boxTop && ly <= boxBottom);
      if (hit === undefined) break;
      base = hit - CLEARANCE - LABEL_GAP - 11 * DESCENT - 1;
    }
    if (base - 12 * ASCENT < top - 12) return undefined;
    out.push(base);
  }
  return out;
}

const COLORS: Record<string, string> = { plaid: '#1d4ed8', mmap: '#0f766e', simple: '#60a5fa', naive: '#9ca3af' };
const PEER_COLORS = ['#f59e0b', '#10b981', '#a855f7', '#ef4444'];

/** The chart as a standalone SVG document. */
export function renderSvg(r: BenchResult): string {
  const W = 960;
  const H = 540;
  const left = 72;
  const right = 250;
  const top = 84;
  const bottom = 104;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const bars = r.methods;
  const highest = Math.max(r.ceiling.gbPerSecond, ...r.ceilings.map((c) => c.gbPerSecond.median), ...bars.map((b) => b.gbPerSecond.max));
  const ceilingValues = r.ceilings.map((c) => c.gbPerSecond.median);
  // Each bar's two labels (its GB/s, and its fraction of the ceiling) sit above its whisker,
  // moved up past any ceiling line they would cross; if that pushes them into the title
  // lines, the axis grows a step and the layout is done again.
  let { max, step } = axis(highest * 1.08);
  let labelAt = layoutBarLabels(bars, ceilingValues, max, top, plotH);
  for (let k = 0; !labelAt && k < 20; k++) {
    max += step;
    labelAt = layoutBarLabels(bars, ceilingValues, max, top, plotH);
  }
  labelAt ??= bars.map((b) => yOf(Math.max(b.gbPerSecond.median, b.gbPerSecond.max), max, top, plotH) - 22);
  const y = (v: number) => yOf(v, max, top, plotH);
  const out: string[] = [];
  const textTo = (to: string[], x: number, yy: number, s: string, attrs = '') => to.push(`<text x="${fix(x, 1)}" y="${fix(yy, 1)}"${attrs ? ` ${attrs}` : ''}>${escapeXml(s)}</text>`);
  const text = (x: number, yy: number, s: string, attrs = '') => textTo(out, x, yy, s, attrs);
  // Drawn last, over the ceiling lines.
  const labels: string[] = [];

  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="12" data-ymax="${max}" data-plot-top="${top}" data-plot-height="${plotH}">`,
  );
  out.push(`<title>${escapeXml(`tensorize bench: ${headline(r)}`)}</title>`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  const gpu = r.device.gpu ? `into ${r.device.name} (${r.device.target})` : 'into host memory (no GPU)';
  text(left, 28, `Loading ${formatBytes(r.source.tensorBytes)} of tensors ${gpu}, ${r.cache.mode} page cache${r.cache.applies ? '' : ' (remote: not applicable)'}`, 'font-size="17" font-weight="600" fill="#111827"');
  text(left, 48, headline(r), 'font-size="12" fill="#374151"');
  const m = r.machine;
  text(left, 65, `${r.date.slice(0, 16).replace('T', ' ')} UTC; ${m.cpus} x ${m.cpuModel}, ${formatBytes(m.memoryBytes)} RAM; ${r.runs} run${r.runs > 1 ? 's' : ''} each: bar = median, whiskers = min-max`, 'font-size="11" fill="#6b7280"');

  // Axis and grid.
  for (let v = 0; v <= max + step / 1000; v += step) {
    const yy = y(v);
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${fix(yy, 1)}" y2="${fix(yy, 1)}" stroke="${v === 0 ? '#374151' : '#e5e7eb'}" stroke-width="1"/>`);
    text(left - 8, yy + 4, Number(v.toFixed(3)).toString(), 'text-anchor="end" fill="#374151"');
  }
  text(20, top + plotH / 2, 'GB/s (10^9 bytes of tensor data per second)', `text-anchor="middle" fill="#374151" transform="rotate(-90 20 ${fix(top + plotH / 2, 1)})"`);

  // Bars, whiskers, labels.
  const slot = plotW / Math.max(bars.length, 1);
  const bw = Math.min(96, slot * 0.6);
  let peer = 0;
  bars.forEach((b, i) => {
    const cx = left + slot * (i + 0.5);
    const g = b.gbPerSecond;
    const color = COLORS[b.id] ?? PEER_COLORS[peer++ % PEER_COLORS.length]!;
    out.push(
      `<rect class="bar" data-id="${escapeXml(b.id)}" data-median="${g.median}" data-min="${g.min}" data-max="${g.max}" x="${fix(cx - bw / 2, 1)}" y="${fix(y(g.median), 2)}" width="${fix(bw, 1)}" height="${fix(y(0) - y(g.median), 2)}" fill="${color}"><title>${escapeXml(`${b.label}: median ${formatRate(g.median)} GB/s (min ${formatRate(g.min)}, max ${formatRate(g.max)}), ${pct(b.fractionOfCeiling)} of the ceiling`)}</title></rect>`,
    );
    if (b.samples.length > 1) {
      const [y1, y2] = [y(g.min), y(g.max)];
      out.push(
        `<g class="whisker" stroke="#111827" stroke-width="1.5"><line x1="${fix(cx, 1)}" x2="${fix(cx, 1)}" y1="${fix(y1, 1)}" y2="${fix(y2, 1)}"/><line x1="${fix(cx - 8, 1)}" x2="${fix(cx + 8, 1)}" y1="${fix(y1, 1)}" y2="${fix(y1, 1)}"/><line x1="${fix(cx - 8, 1)}" x2="${fix(cx + 8, 1)}" y1="${fix(y2, 1)}" y2="${fix(y2, 1)}"/></g>`,
      );
    }
    const labelY = labelAt[i]!;
    // A white halo keeps the labels readable over the grid lines (ceiling lines they avoid).
    const halo = 'paint-order="stroke" stroke="#ffffff" stroke-width="4" stroke-linejoin="round"';
    textTo(labels, cx, labelY, `${formatRate(g.median)} GB/s`, `class="value" data-id="${escapeXml(b.id)}" text-anchor="middle" font-weight="600" fill="#111827" ${halo}`);
    textTo(labels, cx, labelY + LABEL_GAP, `${pct(b.fractionOfCeiling)} of ceiling`, `class="fraction" data-id="${escapeXml(b.id)}" text-anchor="middle" fill="#4b5563" font-size="11" ${halo}`);
    const lines = wrap(b.label, Math.max(12, Math.floor((slot - 16) / 7.5))).slice(0, 3);
    lines.forEach((line, k) => text(cx, top + plotH + 18 + k * 14, line, 'text-anchor="middle" fill="#111827"'));
    if (b.peakRssBytes) text(cx, top + plotH + 18 + lines.length * 14, `peak RSS ${formatBytes(b.peakRssBytes)}`, 'text-anchor="middle" fill="#6b7280" font-size="11"');
  });

  // Ceilings: lines across the plot, labels in the right margin (pushed apart when close).
  const lines = [...r.ceilings].sort((a, b) => b.gbPerSecond.median - a.gbPerSecond.median);
  let lastLabel = -Infinity;
  for (const c of lines) {
    const v = c.gbPerSecond.median;
    const binding = c.id === r.ceiling.id;
    const yy = y(v);
    out.push(
      `<line class="ceiling${binding ? ' binding' : ''}" data-id="${escapeXml(c.id)}" data-gbps="${v}" x1="${left}" x2="${left + plotW}" y1="${fix(yy, 2)}" y2="${fix(yy, 2)}" stroke="${binding ? '#dc2626' : '#6b7280'}" stroke-width="${binding ? 2 : 1.2}" stroke-dasharray="${binding ? '8 4' : '3 3'}"><title>${escapeXml(`${c.label}: ${formatRate(v)} GB/s`)}</title></line>`,
    );
    const ly = Math.max(yy + 4, lastLabel + 30);
    const parts = wrap(`${binding ? 'ceiling: ' : ''}${c.label}`, 34);
    const first = `${formatRate(v)} GB/s`;
    text(left + plotW + 10, ly, first, `font-weight="600" fill="${binding ? '#dc2626' : '#4b5563'}"`);
    parts.slice(0, 2).forEach((p, k) => text(left + plotW + 10, ly + 13 * (k + 1), p, `font-size="11" fill="${binding ? '#dc2626' : '#4b5563'}"`));
    lastLabel = ly + 13 * Math.min(parts.length, 2);
  }
  out.push(...labels);
  const foot = r.cache.applies && r.cache.mode === 'cold' && r.cache.evicted === false ? `Warning: ${r.cache.message}` : r.device.description;
  const footLines = wrap(foot, 150).slice(0, 2);
  footLines.forEach((l, k) => text(left, H - 12 - 13 * (footLines.length - 1 - k), l, `font-size="11" fill="${foot.startsWith('Warning') ? '#b91c1c' : '#6b7280'}"`));
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** The HTML report: title, the chart (inline SVG), the table, the notes and the JSON. */
export function renderHtml(r: BenchResult): string {
  const t = tableRows(r);
  const cell = (c: string, i: number, tag: 'td' | 'th') => `<${tag}${t.numeric.has(i) ? ' class="num"' : ''}>${escapeXml(c)}</${tag}>`;
  const title = `tensorize bench: ${headline(r)}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeXml(title)}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #111827; max-width: 1000px; }
h1 { font-size: 20px; margin: 0 0 8px; }
p { margin: 4px 0; color: #374151; }
.warn { color: #b91c1c; font-weight: 600; }
table { border-collapse: collapse; margin: 16px 0; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e7eb; text-align: left; white-space: nowrap; }
th { border-bottom: 2px solid #9ca3af; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.foot { font-size: 13px; }
pre { background: #f3f4f6; padding: 12px; overflow: auto; font-size: 11px; }
svg { max-width: 100%; height: auto; }
</style>
</head>
<body>
<h1>${escapeXml(title)}</h1>
<p>${escapeXml(r.device.description)}</p>
<p${r.cache.mode === 'cold' && r.cache.evicted === false ? ' class="warn"' : ''}>${escapeXml(r.cache.message)}</p>
<p>${escapeXml(`${r.tool}, ${r.date}; machine: ${machineLine(r)}`)}</p>
${renderSvg(r)}
<table>
<thead><tr>${t.headers.map((h, i) => cell(h, i, 'th')).join('')}</tr></thead>
<tbody>
${t.rows.map((row) => `<tr>${row.map((c, i) => cell(c, i, 'td')).join('')}</tr>`).join('\n')}
</tbody>
</table>
${footnotes(r).map((f) => `<p class="foot">${escapeXml(f.trim())}</p>`).join('\n')}
<ul>
${[...r.notes, ...r.skipped.map((s) => `Skipped: ${s.label}: ${s.reason}`)].map((n) => `<li>${escapeXml(n)}</li>`).join('\n')}
${r.methods.filter((m) => m.command).map((m) => `<li>${escapeXml(`The same load by hand (${m.label}): ${m.command}`)}</li>`).join('\n')}
</ul>
<details><summary>The JSON document (tensorize bench --json)</summary>
<pre>${escapeXml(JSON.stringify(r, null, 2))}</pre>
</details>
</body>
</html>
`;
}
