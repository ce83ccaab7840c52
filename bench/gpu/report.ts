/** bench:gpu's results: the Markdown and JSON files (rewritten after every row), the printed tables, and the run's verdict. */
import * as tf from '@tensorflow/tfjs-core';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type { BackendName } from '../../src/backends/node.js';
import { packageVersion, type Adapter } from './device.js';
import { torchLlamaRows, type LlamaRow, type LlamaSetup } from './llama.js';
import { llamaSection, llamaTable, llamaTargets } from './llama-report.js';
import { markdownTable, type Row } from './rows.js';
import { torchLine, type TorchReport } from './torch.js';

export interface GpuRun {
  /** The result files' path without .md / .json. */
  base: string;
  date: string;
  name: string;
  quick: boolean;
  reps: number;
  backend: BackendName;
  adapter: Adapter | null;
  kernels: Array<string | undefined>;
  torch: TorchReport;
  machine: Machine;
  rows: Row[];
  llama: LlamaSetup;
  /** Ours; PyTorch's are added from `torch` when written. */
  llamaRows: LlamaRow[];
}
export type Machine = ReturnType<typeof machineInfo>;

/** The JSON's `machine`. */
export function machineInfo(date: string, backend: BackendName, adapter: Adapter | null, kernels: Array<string | undefined>, torch: TorchReport, reps: number, quick: boolean) {
  return {
    date,
    backend,
    adapter,
    node: process.version,
    tfjs: tf.version_core,
    webgpu_npm: packageVersion('webgpu'),
    inf_llava: packageVersion('inf-llava'),
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    attention_kernels: kernels.map((k) => k ?? null),
    torch: torch.machine ?? { unavailable: torch.missing },
    reps,
    quick,
  };
}

/** Our llama8b rows, then PyTorch's. */
const allLlamaRows = (r: GpuRun) => [...r.llamaRows, ...torchLlamaRows(r.llama, r.torch)];

/** Writes <base>.md and <base>.json with every row so far. */
export function save(r: GpuRun): void {
  const { adapter, machine, reps } = r;
  const md = [
    `# GPU benchmark ${r.date}: ${r.name}${r.quick ? ' (--quick: tiny sizes, not a measurement)' : ''}`,
    '',
    adapter
      ? `- Adapter (Dawn, \`webgpu\` npm ${machine.webgpu_npm ?? '?'}): ${['vendor', 'architecture', 'device', 'description'].map((k) => `${k} \`${String(adapter.info[k])}\``).join(', ')}; subgroups ${String(adapter.info.subgroupMinSize)}–${String(adapter.info.subgroupMaxSize)}`
      : `- Backend: ${r.backend} on ${machine.cores}× ${machine.cpu}`,
    ...(adapter
      ? [
          `- Adapter features: ${adapter.features.join(', ')}`,
          `- Device features tfjs asked for: ${adapter.deviceFeatures.join(', ') || '—'}`,
          `- Limits: ${Object.entries(adapter.limits).map(([k, v]) => `${k} ${v}`).join(', ')}`,
        ]
      : []),
    `- tfjs-core ${machine.tfjs}, Node ${machine.node}, inf-llava ${machine.inf_llava ?? '(source)'}; attention kernels: ${r.kernels.map((k) => k ?? 'the op has no `kernel` option').join(', ')}`,
    `- ${torchLine(r.torch)}`,
    `- Method: per variant, 2 warm-up calls (CLIP: 1), then the median of ${reps} call(s) with the result read back (\`await data()\`); "pipelined": ${reps} call(s) queued back to back, only the last read back, time per call. GFLOP/s from FLOPs counted from the shapes, on the pipelined time when there is one; GB/s (packed cases) from the weight's bytes (words, scales, mins) the same way. PyTorch (packed cases: a bf16 \`F.linear\` for every format, PyTorch's own decode path): the same, each call ended by \`torch.cuda.synchronize()\` ("torch ms"; with \`.cpu()\` in the JSON as readback_ms). ours / torch: pipelined against pipelined where both exist, else ours read back against torch synchronized. check: max |a − b| / max |a| against the case's first variant, and whether the output is finite.`,
    '',
    ...(r.rows.length ? [markdownTable(r.rows), ''] : []),
    ...(r.llama.cases.length ? [llamaSection(r.llama, allLlamaRows(r)), ''] : []),
  ].join('\n');
  writeFileSync(`${r.base}.md`, md);
  writeFileSync(`${r.base}.json`, JSON.stringify({ machine, rows: r.rows, llama8b: allLlamaRows(r) }, null, 2));
}

/**
 * The self-check: our rows that failed (prepare or run), disagree with their case's first
 * variant (MISMATCH) or are not finite, and our llama8b rows that failed or gave non-finite
 * logits. PyTorch's failures are reported but are not ours.
 */
export function selfCheckFailures(r: GpuRun): string[] {
  const ours = r.rows.filter((row) => /MISMATCH|NOT FINITE/.test(row.check ?? '') || /^(prepare )?failed:/.test(row.note ?? '')).map((row) => `${row.name} [${row.variant}]`);
  const oursLlama = r.llamaRows.filter((row) => row.logits_finite === false || /^failed:/.test(row.note ?? '')).map((row) => `${row.model} ${row.format}`);
  return [...ours, ...oursLlama];
}

/** The tables and the ATTENTION lines on stdout, as at the end of a run. */
export function printSummary(r: GpuRun, elapsedS: number): void {
  if (r.rows.length) console.log(`\n${markdownTable(r.rows)}\n`);
  const llama = allLlamaRows(r);
  if (r.llama.cases.length) console.log(`\n${llamaTable(llama, r.llama.prefill)}\n\n${llamaTargets(llama, r.llama).join('\n')}\n`);
  const bad = r.rows.filter((row) => /MISMATCH|NOT FINITE/.test(row.check ?? '') || /failed/.test(row.note ?? ''));
  const badLlama = llama.filter((row) => row.logits_finite === false || /failed/.test(row.note ?? ''));
  if (bad.length) console.log(`ATTENTION: ${bad.length} row(s) failed or disagree with their case's first variant: ${bad.map((row) => `${row.name} [${row.variant}]`).join('; ')}`);
  if (badLlama.length) console.log(`ATTENTION: llama8b row(s) failed or not finite: ${badLlama.map((row) => `${row.model} ${row.format}`).join('; ')}`);
  if (r.torch.missing) console.log(`torch: unavailable (${r.torch.missing})`);
  console.log(`Wrote ${r.base}.md and ${r.base}.json (${elapsedS.toFixed(0)} s)`);
}
