/** Markdown table, JSON rows and an SVG chart of ratio-to-ceiling per primitive per backend. */
export interface Row {
  name: string;
  backend: string;
  shape: string;
  median_ms: number | null;
  /** Repetitions behind the median (fewer than asked when a call is slow, see --budget). */
  reps?: number;
  median_ms_no_readback: number | null;
  bytes: number;
  flops: number;
  gbps: number | null;
  gflops: number | null;
  /** The backend's own ceiling measured in the same run: copy GB/s or matMul GFLOP/s. */
  ceiling: number | null;
  ceiling_kind: 'copy GB/s' | 'matMul GFLOP/s';
  ratio_to_ceiling: number | null;
  /** Synchronous backends: the same ratio from times without read-back (op and ceiling alike). */
  ceiling_no_readback?: number | null;
  ratio_to_ceiling_no_readback?: number | null;
  peak_bytes: number | null;
  torch_median_ms: number | null;
  ratio_to_torch: number | null;
  note?: string;
}

const f = (v: number | null | undefined, digits = 1) => (v == null ? '—' : v.toFixed(digits));

export function markdownTable(rows: Row[]): string {
  const head = '| backend | primitive | ms | ms w/o read-back | GB/s | GFLOP/s | ceiling | of ceiling | peak MiB | torch ms | ours / torch |';
  const sep = '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|';
  const lines = rows.map((r) =>
    r.median_ms == null
      ? `| ${r.backend} | ${r.name} | — | — | — | — | — | — | — | ${f(r.torch_median_ms)} | ${r.note ?? ''} |`
      : `| ${r.backend} | ${r.name} | ${f(r.median_ms)} | ${f(r.median_ms_no_readback)} | ${r.flops && r.ceiling_kind === 'matMul GFLOP/s' ? '' : f(r.gbps, 2)} | ${r.ceiling_kind === 'matMul GFLOP/s' ? f(r.gflops) : ''} | ${f(r.ceiling, 2)} ${r.ceiling_kind} | ${r.ratio_to_ceiling == null ? '—' : `${(100 * r.ratio_to_ceiling).toFixed(0)} %`} | ${r.peak_bytes == null ? '—' : (r.peak_bytes / 2 ** 20).toFixed(0)} | ${f(r.torch_median_ms)} | ${r.ratio_to_torch == null ? '—' : `${r.ratio_to_torch.toFixed(2)}×`} |`,
  );
  return [head, sep, ...lines].join('\n');
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
