/** Markdown table, JSON rows and an SVG chart of ratio-to-ceiling per primitive per backend. */

/** What every benchmark row has (`npm run bench`'s rows here, `npm run bench:gpu`'s in gpu/rows.ts). */
export interface MeasuredRow {
  name: string;
  shape: string;
  flops: number;
  /** Median ms of a call with its result read back; null when not measured (see `note`). */
  median_ms: number | null;
  gflops: number | null;
  ratio_to_torch: number | null;
  note?: string;
}

export interface Row extends MeasuredRow {
  backend: string;
  /** Repetitions behind the median (fewer than asked when a call is slow, see --budget). */
  reps?: number;
  median_ms_no_readback: number | null;
  bytes: number;
  gbps: number | null;
  /** The backend's own ceiling measured in the same run: copy GB/s or matMul GFLOP/s. */
  ceiling: number | null;
  ceiling_kind: 'copy GB/s' | 'matMul GFLOP/s';
  ratio_to_ceiling: number | null;
  /** Synchronous backends: the same ratio from times without read-back (op and ceiling alike). */
  ceiling_no_readback?: number | null;
  ratio_to_ceiling_no_readback?: number | null;
  peak_bytes: number | null;
  torch_median_ms: number | null;
}

/** `v` with `digits` decimals; '—' when there is no value. */
export const fixed = (v: number | null | undefined, digits = 1) => (v == null ? '—' : v.toFixed(digits));
/** A ratio as `1.23×`; '—' when there is none. */
export const times = (v: number | null | undefined) => (v == null ? '—' : `${v.toFixed(2)}×`);

/**
 * A Markdown table: `columns` are the headers, a trailing ':' right-aligns one (`'ms:'`); each
 * row is its cells, in order.
 */
export function mdTable(columns: string[], rows: string[][]): string {
  const head = `| ${columns.map((c) => c.replace(/:$/, '')).join(' | ')} |`;
  const sep = `|${columns.map((c) => (c.endsWith(':') ? '---:' : '---')).join('|')}|`;
  return [head, sep, ...rows.map((cells) => `| ${cells.join(' | ')} |`)].join('\n');
}

const f = fixed;

export function markdownTable(rows: Row[]): string {
  const columns = ['backend', 'primitive', 'ms:', 'ms w/o read-back:', 'GB/s:', 'GFLOP/s:', 'ceiling:', 'of ceiling:', 'peak MiB:', 'torch ms:', 'ours / torch:'];
  return mdTable(
    columns,
    rows.map((r) =>
      r.median_ms == null
        ? [r.backend, r.name, '—', '—', '—', '—', '—', '—', '—', f(r.torch_median_ms), r.note ?? '']
        : [
            r.backend,
            r.name,
            f(r.median_ms),
            f(r.median_ms_no_readback),
            r.flops && r.ceiling_kind === 'matMul GFLOP/s' ? '' : f(r.gbps, 2),
            r.ceiling_kind === 'matMul GFLOP/s' ? f(r.gflops) : '',
            `${f(r.ceiling, 2)} ${r.ceiling_kind}`,
            r.ratio_to_ceiling == null ? '—' : `${(100 * r.ratio_to_ceiling).toFixed(0)} %`,
            r.peak_bytes == null ? '—' : (r.peak_bytes / 2 ** 20).toFixed(0),
            f(r.torch_median_ms),
            times(r.ratio_to_torch),
          ],
    ),
  );
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Horizontal bars: one group per primitive, one bar per backend, length = ratio to ceiling. */
export function svgChart(rows: Row[], title: string): string {
  const backends = [...new Set(rows.map((r) => r.backend))];
  const names = [...new Set(rows.map((r) => r.name))];
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd'];
  const barH = 9;
  const groupH = backends.length * barH + 8;
  const left = 360;
  const width = 860;
  const scale = (width - left - 60) / 1.0; // 100 % of ceiling
  const top = 50;
  const height = top + names.length * groupH + 30;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif" font-size="10">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="18" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<text x="10" y="34">fraction of the backend's own ceiling (copy bandwidth for rearrangements, matMul rate for the DEM), same run</text>`,
  ];
  backends.forEach((b, i) => {
    parts.push(`<rect x="${left + i * 110}" y="40" width="10" height="8" fill="${colors[i % colors.length]}"/><text x="${left + 14 + i * 110}" y="48">${esc(b)}</text>`);
  });
  for (const x of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${left + x * scale}" y1="${top}" x2="${left + x * scale}" y2="${height - 24}" stroke="#ddd"/><text x="${left + x * scale - 8}" y="${height - 10}">${x * 100}%</text>`);
  }
  names.forEach((name, g) => {
    const y0 = top + g * groupH;
    parts.push(`<text x="${left - 6}" y="${y0 + groupH / 2 + 3}" text-anchor="end">${esc(name)}</text>`);
    backends.forEach((b, i) => {
      const r = rows.find((row) => row.name === name && row.backend === b);
      const ratio = r?.ratio_to_ceiling;
      if (ratio == null) return;
      const w = Math.min(ratio, 1.15) * scale;
      parts.push(`<rect x="${left}" y="${y0 + i * barH}" width="${w.toFixed(1)}" height="${barH - 2}" fill="${colors[i % colors.length]}"/>`);
      parts.push(`<text x="${left + w + 3}" y="${y0 + i * barH + 7}" font-size="8">${(100 * ratio).toFixed(0)}%</text>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Bytes as GB (≥ 0.1 GB) or MB; '—' for a missing value. */
export const gb = (v: number | null | undefined) => (v == null ? '—' : v >= 1e8 ? `${(v / 1e9).toFixed(2)} GB` : `${(v / 1e6).toFixed(2)} MB`);
/** Three significant digits; '—' for a missing value. */
export const sig = (v: number | null | undefined) => (v == null ? '—' : v.toPrecision(3));
