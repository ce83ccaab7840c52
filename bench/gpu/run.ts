/**
 * GPU benchmark: the library on `webgpu` (Dawn) next to PyTorch (CUDA, fp32) on the same card,
 * in one run. Built into one file, bench/gpu/run.mjs (bench/gpu/build.mjs), that imports the
 * library as the package `inf-llava` so it runs inside the GPU machine's bundle (bench/README.md;
 * `npm run bench:gpu:pack` makes the bundle with scripts/device-bundle.sh).
 *
 *   npm run bench:gpu -- [--quick] [--reps N] [--only a,b] [--kernels a,b] [--backend webgpu]
 *                        [--no-torch] [--torch-device cuda|cpu] [--python P] [--torch-timeout S]
 *                        [--max-minutes M] [--save | --out DIR] [--name SLUG]
 *
 * Cases (cases.ts): tfjs's matMul at 1024³/2048³/4096³; the `attention` op at the DEM window,
 * CLIP's 18 × 16 heads, a LLaMA-3-8B prefill and decode step (every `opts.kernel` the op accepts,
 * found at run time; attention.ts); the official DEM (`spatialEmbed`, dem.ts) and CLIP
 * ViT-L/14-336 on 18 crops to layer −2 (random weights; clip.ts); the packed-weight linear layer
 * (`packedLinear`, bf16 / q8 / q4; packed.ts) at LLaMA-3-8B shapes: decode GEMVs (GB/s of weight
 * bytes read) and the prefill GEMM (random packed weights made on the device). Each variant
 * (timing.ts, rows.ts): median of N calls with the result read back, and N calls queued back to
 * back with only the last read back (per call: "pipelined"); GFLOP/s from FLOPs counted from the
 * shapes. PyTorch (bench/gpu/torch_gpu.py, embedded in the bundle; torch.ts) times the same cases.
 * Last, the `llama8b` group (--only llama8b; llama.ts, llama-weights.ts, llama-report.ts): a
 * synthetic LLaMA-3-8B (bf16, q4, q8), random packed weights made in JS (no file) and uploaded by
 * llamaFromTensors, prefill 600 and greedy decode timed; PyTorch's own bf16 LLaMA (and
 * transformers' if importable) beside it. --quick: a tiny model.
 *
 * Writes <date>-gpu-<adapter>[-quick].json and .md into: --out DIR; else bench/results with
 * --save; else $OUT/bench/results when $OUT is set (the GPU machine); else a temporary folder.
 *
 * Exit status: 0 when every row ran and checked out; 1 when the run crashed (an uncaught error or
 * an unhandled rejection anywhere, or the backend would not start; the rows finished before it
 * are written); 2 for a bad argument; 3 when it ran to the end but the self-check failed: one of
 * our rows failed, disagrees with its case's first variant (MISMATCH) or is not finite (the
 * ATTENTION lines name them; PyTorch's failures alone do not count).
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useBackend } from '../../src/backends/node.js';
import { attentionKernels } from './attention.js';
import { gpuCases } from './cases.js';
import { adapterInfo, cardName, logAdapter } from './device.js';
import { emptyLlamaRow, llamaSetup, llamaTorchSpec, runLlamaCase } from './llama.js';
import { describeLlama } from './llama-weights.js';
import { log, parseArgs, selected, USAGE } from './options.js';
import { machineInfo, printSummary, save, selfCheckFailures, type GpuRun } from './report.js';
import { emptyRow, runCase } from './rows.js';
import { runTorch } from './torch.js';

const started = performance.now();
const elapsedS = () => (performance.now() - started) / 1000;
/** The result files, once named: a crash says where the rows finished before it are. */
let written: string | undefined;

function crash(what: string, e: unknown): never {
  try {
    console.error(`bench:gpu: ${what}: ${(e as Error)?.stack ?? String(e)}`);
    if (written) console.error(`bench:gpu: the rows finished before it are in ${written}.md and ${written}.json`);
  } finally {
    process.exit(1);
  }
}
process.on('uncaughtException', (e) => crash('uncaught exception', e));
process.on('unhandledRejection', (e) => crash('unhandled rejection', e));

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (o === 'help') {
    console.log(USAGE);
    return 0;
  }
  try {
    await useBackend(o.backend);
  } catch (e) {
    console.error(`bench:gpu: ${(e as Error).message}`);
    return 1;
  }
  const kernels = attentionKernels(o.kernels);
  const cases = selected(gpuCases(o.quick, kernels), o.only);
  const llama = llamaSetup(o);
  const adapter = o.backend === 'webgpu' ? await adapterInfo() : null;
  const name = o.name ?? cardName(adapter, o.backend);
  if (adapter) logAdapter(adapter);
  log(`attention kernels: ${kernels.map((k) => k ?? '(no opts.kernel: the op\'s one path)').join(', ')}`);
  log(`${cases.length} cases${llama.cases.length ? ` + ${llama.cases.length} llama8b (${llama.cases.map((c) => c.format).join(', ')})` : ''}, ${o.reps} reps${o.quick ? ' (--quick)' : ''}`);

  const date = new Date().toISOString().slice(0, 10);
  const outDir = o.out ?? (o.save ? 'bench/results' : process.env.OUT ? join(process.env.OUT, 'bench/results') : mkdtempSync(join(tmpdir(), 'inf-llava-bench-gpu-results-')));
  mkdirSync(outDir, { recursive: true });
  const base = join(outDir, `${date}-gpu-${name}${o.quick ? '-quick' : ''}`);
  written = base;

  const torch = runTorch([...cases.map((c) => ({ name: c.name, kind: c.kind, params: c.params, pipeline: c.pipeline })), ...llamaTorchSpec(llama)], o);
  log(torch.missing ? `torch: unavailable (${torch.missing})` : `torch: ${JSON.stringify(torch.machine)}`);

  const run: GpuRun = {
    base,
    date,
    name,
    quick: o.quick,
    reps: o.reps,
    backend: o.backend,
    adapter,
    kernels,
    torch,
    machine: machineInfo(date, o.backend, adapter, kernels, torch, o.reps, o.quick),
    rows: [],
    llama,
    llamaRows: [],
  };
  const write = () => save(run);

  const casesStarted = performance.now();
  const pastMaxMinutes = () => (performance.now() - casesStarted) / 60_000 > o.maxMinutes;
  const skipped = `skipped: past --max-minutes ${o.maxMinutes}`;
  for (const c of cases) {
    if (pastMaxMinutes()) {
      log(`  ${c.name}: skipped (past --max-minutes ${o.maxMinutes})`);
      run.rows.push(emptyRow(c, '—', torch, o.reps, skipped));
      write();
      continue;
    }
    await runCase(c, { torch, reps: o.reps, rows: run.rows, save: write });
  }

  // The llama8b group last: the longest (~1 min at size on the H200), and a time-out or a lost
  // device there leaves every row above written.
  for (const c of llama.cases) {
    if (pastMaxMinutes()) {
      log(`  ${c.name}: skipped (past --max-minutes ${o.maxMinutes})`);
      run.llamaRows.push({ ...emptyLlamaRow(c, llama.model), note: skipped });
      write();
      continue;
    }
    log(`== ${c.name} (${describeLlama(c.config)})`);
    const tensorsBefore = tf.memory().numTensors;
    const row = await runLlamaCase(c, llama);
    const leaked = tf.memory().numTensors - tensorsBefore;
    if (leaked !== 0) {
      log(`  NOTE: ${leaked} tensors left after the case`);
      row.note = [row.note, `${leaked} tensors left after the case`].filter(Boolean).join('; ');
    }
    run.llamaRows.push(row);
    write();
  }

  write();
  printSummary(run, elapsedS());
  const failed = selfCheckFailures(run);
  if (failed.length) console.error(`bench:gpu: self-check failed (exit status 3): ${failed.join('; ')}`);
  return failed.length ? 3 : 0;
}

main().then(
  (status) => process.exit(status),
  (e) => crash('failed', e),
);
