/** The cases' rows: one per variant, timed, checked against the case's first variant, set beside PyTorch's row; their table. */
import * as tf from '@tensorflow/tfjs-core';
import { fixed, mdTable, times, type MeasuredRow } from '../report.js';
import type { GpuCase, Kind, PreparedVariants } from './case.js';
import { firstLine, log } from './options.js';
import { compare, MISMATCH, timeVariant } from './timing.js';
import type { TorchReport } from './torch.js';

export interface Row extends MeasuredRow {
  variant: string;
  kind: Kind;
  reps: number;
  dispatch_ms: number | null;
  pipelined_ms: number | null;
  times_ms?: number[];
  /** Bytes of the case's weights / time (packed cases), on the pipelined time when there is one. */
  gbps: number | null;
  /** Against the case's first variant that ran: max |a − b| / max |first|, and finiteness. */
  check: string | null;
  torch_ms: number | null;
  torch_pipelined_ms: number | null;
  torch_readback_ms: number | null;
  torch_gflops: number | null;
  /** Ours (pipelined when timed, else read back) / torch (pipelined when timed, else synchronized). */
  ratio_to_torch: number | null;
}

/** A row with the case's counts and PyTorch's numbers, not measured yet (`note`: why, when it will not be). */
export function emptyRow(c: GpuCase, variant: string, torch: TorchReport, reps: number, note?: string): Row {
  const t = torch.rows.get(c.name);
  const torchBest = t ? (t.pipelined_ms ?? t.median_ms) : null;
  return {
    name: c.name,
    variant,
    kind: c.kind,
    shape: c.shape,
    flops: c.flops,
    reps,
    median_ms: null,
    dispatch_ms: null,
    pipelined_ms: null,
    gflops: null,
    gbps: null,
    check: null,
    torch_ms: t?.median_ms ?? null,
    torch_pipelined_ms: t?.pipelined_ms ?? null,
    torch_readback_ms: t?.readback_ms ?? null,
    torch_gflops: torchBest ? c.flops / (torchBest * 1e6) : null,
    ratio_to_torch: null,
    ...(note ? { note } : t?.error ? { note: `torch failed: ${t.error}` } : {}),
  };
}

/** Ours / torch: pipelined against pipelined where both exist, else ours read back against torch synchronized. */
function ratioToTorch(r: Row): number | null {
  if (r.median_ms == null) return null;
  if (r.pipelined_ms != null && r.torch_pipelined_ms != null) return r.pipelined_ms / r.torch_pipelined_ms;
  return r.torch_ms ? r.median_ms / r.torch_ms : null;
}

const rate = (v: number | null | undefined) => (v == null ? '—' : v >= 100 ? v.toFixed(0) : v.toFixed(2));

export function markdownTable(rows: Row[]): string {
  const columns = ['case', 'variant', 'GFLOP:', 'ms, read back:', 'ms, pipelined:', 'GFLOP/s:', 'GB/s:', 'torch ms:', 'torch ms, pipelined:', 'torch GFLOP/s:', 'ours / torch:', 'check'];
  return mdTable(
    columns,
    rows.map((r) => [
      r.name,
      r.variant,
      fixed(r.flops / 1e9, r.flops >= 1e9 ? 1 : 4),
      fixed(r.median_ms, 2),
      fixed(r.pipelined_ms, 2),
      rate(r.gflops),
      rate(r.gbps),
      fixed(r.torch_ms, 2),
      fixed(r.torch_pipelined_ms, 2),
      rate(r.torch_gflops),
      times(r.ratio_to_torch),
      [r.check, r.note].filter(Boolean).join('; ') || '—',
    ]),
  );
}

export interface CaseRun {
  torch: TorchReport;
  reps: number;
  /** The rows so far; each case's rows are pushed as they finish. */
  rows: Row[];
  /** Rewrites the result files (after every row, so a run cut short keeps its rows). */
  save: () => void;
}

/** One case: prepare its inputs, then time and check every variant (a failure is that row's note). */
export async function runCase(c: GpuCase, r: CaseRun): Promise<void> {
  const { rows, save } = r;
  const tensorsBefore = tf.memory().numTensors;
  let p: PreparedVariants | undefined;
  const t0 = performance.now();
  try {
    p = c.prepare();
  } catch (e) {
    rows.push(emptyRow(c, '—', r.torch, r.reps, `prepare failed: ${firstLine(e)}`));
    log(`  ${c.name}: prepare failed: ${firstLine(e)}`);
    save();
    return;
  }
  log(`== ${c.name} (inputs ready in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  let reference: { out: tf.Tensor; label: string } | undefined;
  for (const v of p.variants) {
    const row = emptyRow(c, v.label, r.torch, r.reps);
    try {
      const t = await timeVariant(v.run, c.warmup, c.pipeline, r.reps);
      Object.assign(row, t);
      const ms = t.pipelined_ms ?? t.median_ms;
      row.gflops = c.flops / (ms * 1e6);
      if (c.bytes) row.gbps = c.bytes / (ms * 1e6);
      row.ratio_to_torch = ratioToTorch(row);
      const out = v.run();
      if (!reference) {
        reference = { out, label: v.label };
        const { finite } = await compare(out, out);
        row.check = finite ? 'finite' : 'NOT FINITE';
      } else {
        const { rel, finite } = await compare(out, reference.out);
        row.check = `${rel > MISMATCH ? 'MISMATCH ' : ''}${rel.toExponential(1)} vs ${reference.label}${finite ? '' : ', NOT FINITE'}`;
        out.dispose();
      }
      log(`  ${v.label}: ${t.median_ms.toFixed(2)} ms read back${t.pipelined_ms == null ? '' : `, ${t.pipelined_ms.toFixed(2)} ms pipelined`} → ${rate(row.gflops)} GFLOP/s; ${row.check}`);
    } catch (e) {
      row.note = `failed: ${firstLine(e)}`;
      log(`  ${v.label}: FAILED ${firstLine(e)}`);
    }
    rows.push(row);
    save();
  }
  reference?.out.dispose();
  p.dispose();
  const leaked = tf.memory().numTensors - tensorsBefore;
  if (leaked !== 0) {
    log(`  NOTE: ${leaked} tensors left after the case`);
    rows[rows.length - 1]!.note = [rows[rows.length - 1]!.note, `${leaked} tensors left after the case`].filter(Boolean).join('; ');
  }
}
