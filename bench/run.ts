/**
 * Microbenchmarks: every primitive on every available backend, against the backend's own
 * ceiling (copy bandwidth / matMul rate) and against PyTorch on the same machine.
 *
 *   npm run bench -- [--backend cpu,wasm,tensorflow,webgpu] [--only name,name] [--quick]
 *                    [--json FILE] [--no-torch] [--budget SECONDS] [--save]
 *
 * Prints a Markdown table; writes the --json file (all rows) when asked. Only with --save does it
 * write into the tree: bench/results/<date>-<backend>.json per backend and
 * bench/results/<date>-chart.svg (a plain run leaves the working tree as it was).
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { BACKENDS, useBackend, type BackendName } from '../src/backends/node.js';
import { CASES, type Case } from './cases.js';
import { copyCeiling, matMulCeiling, peakBytes, time } from './measure.js';
import { markdownTable, svgChart, type Row } from './report.js';
import { runTorch } from './torch.js';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const value = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const quick = flag('quick');
const save = flag('save');
const reps = quick ? 2 : 5;
const only = value('only')?.split(',').map((s) => s.trim()).filter(Boolean);
const budget = Number(value('budget') ?? (quick ? 60 : 180)); // seconds per case, all repetitions
const backends = (value('backend')?.split(',') ?? [...BACKENDS]) as BackendName[];
const cases = CASES.filter((c) => !only || only.some((o) => c.name.includes(o)));
const log = (s: string) => process.stderr.write(`${s}\n`);

async function benchBackend(backend: BackendName): Promise<Row[]> {
  try {
    await useBackend(backend);
  } catch (e) {
    log(`NOTICE: ${(e as Error).message} — its rows are skipped`);
    return [];
  }
  log(`== ${backend}`);
  const copyRates = new Map<number, { gbps: number; gbps_no_readback: number }>();
  let matmulRate: number | undefined;
  const rows: Row[] = [];
  for (const c of cases) {
    let ceiling: number;
    let ceilingNoReadback: number | null = null;
    if (c.ceiling === 'copy') {
      const key = Math.round(c.bytes / 8);
      if (!copyRates.has(key)) copyRates.set(key, await copyCeiling(key, reps));
      ceiling = copyRates.get(key)!.gbps;
      ceilingNoReadback = copyRates.get(key)!.gbps_no_readback;
    } else {
      matmulRate ??= await matMulCeiling(5184, 1024, Math.max(1, reps - 2));
      ceiling = matmulRate;
    }
    const estimate = c.ceiling === 'matmul' ? c.flops / (ceiling * 1e9) : 0;
    const base: Omit<Row, 'median_ms' | 'median_ms_no_readback' | 'gbps' | 'gflops' | 'ratio_to_ceiling' | 'peak_bytes'> = {
      name: c.name,
      backend,
      shape: c.shape,
      bytes: c.bytes,
      flops: c.flops,
      ceiling,
      ceiling_kind: c.ceiling === 'copy' ? 'copy GB/s' : 'matMul GFLOP/s',
      torch_median_ms: null,
      ratio_to_torch: null,
    };
    if (estimate * (reps + 1) > budget) {
      const note = `skipped: ≈${estimate.toFixed(0)} s a call at the measured ${ceiling.toFixed(1)} GFLOP/s (budget ${budget} s)`;
      log(`  ${c.name}: ${note}`);
      rows.push({ ...base, median_ms: null, median_ms_no_readback: null, gbps: null, gflops: null, ratio_to_ceiling: null, peak_bytes: null, note });
      continue;
    }
    const m = await measure(c, ceiling);
    rows.push({
      ...base,
      ...m,
      ceiling_no_readback: ceilingNoReadback,
      ratio_to_ceiling_no_readback: ceilingNoReadback == null ? null : c.bytes / (m.median_ms_no_readback * 1e6) / ceilingNoReadback,
    });
    const r = rows[rows.length - 1]!;
    log(`  ${c.name}: ${r.median_ms!.toFixed(1)} ms (${(100 * r.ratio_to_ceiling!).toFixed(0)} % of ceiling)`);
  }
  return rows;
}

async function measure(c: Case, ceiling: number) {
  const p = c.prepare();
  try {
    const t = await time(p, reps, 1, budget * 1000);
    const gbps = c.bytes / (t.median_ms * 1e6);
    const gflops = c.flops / (t.median_ms * 1e6);
    return {
      reps: t.reps,
      median_ms: t.median_ms,
      median_ms_no_readback: t.median_ms_no_readback,
      gbps,
      gflops: c.flops ? gflops : null,
      ratio_to_ceiling: (c.ceiling === 'copy' ? gbps : gflops) / ceiling,
      peak_bytes: await peakBytes(p),
    };
  } finally {
    p.dispose();
  }
}

const rows: Row[] = [];
for (const b of backends) rows.push(...(await benchBackend(b)));

const torch = flag('no-torch') ? { rows: new Map<string, number>(), missing: 'PyTorch not run (--no-torch)' } : runTorch(only, quick);
if (torch.missing) log(`NOTICE: ${torch.missing}`);
for (const r of rows) {
  const t = torch.rows.get(r.name) ?? torch.rows.get(r.name.replace(/ \[[^\]]*\]$/, "")); // attention rows: one torch row for every variant
  r.torch_median_ms = t ?? null;
  r.ratio_to_torch = t != null && r.median_ms != null ? r.median_ms / t : null;
}

const date = new Date().toISOString().slice(0, 10);
const machine = {
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  memory_gib: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  tfjs: tf.version_core,
  torch: torch.machine ?? torch.missing,
  quick,
  reps,
};
if (save) {
  mkdirSync('bench/results', { recursive: true });
  for (const b of new Set(rows.map((r) => r.backend))) {
    writeFileSync(`bench/results/${date}-${b}.json`, JSON.stringify({ machine, date, rows: rows.filter((r) => r.backend === b) }, null, 2));
  }
  writeFileSync(`bench/results/${date}-chart.svg`, svgChart(rows.filter((r) => r.median_ms != null), `inf-llava microbenchmarks, ${date}, ${machine.cores}× ${machine.cpu}`));
}
const jsonPath = value('json');
if (jsonPath) writeFileSync(jsonPath, JSON.stringify({ machine, date, rows }, null, 2));
console.log(`Machine: ${machine.cores}× ${machine.cpu}, ${machine.memory_gib} GiB, Node ${machine.node}, tfjs ${machine.tfjs}; ${reps} reps (median)\n`);
console.log(markdownTable(rows));
if (torch.missing) console.log(`\n${torch.missing}`);
const written = [...(save ? [`bench/results/${date}-<backend>.json`, `bench/results/${date}-chart.svg`] : []), ...(jsonPath ? [jsonPath] : [])];
console.log(
  `\n${written.length ? `Wrote ${written.join(', ')}.` : 'Nothing written.'}` +
    (save ? '' : ` Add --save to write bench/results/${date}-<backend>.json and bench/results/${date}-chart.svg.`),
);
