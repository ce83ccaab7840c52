/**
 * PyTorch's side of bench:gpu: bench/gpu/torch_gpu.py (embedded in the built script) gets the
 * case list as JSON and times the same cases on the same card, in one process before ours.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPython, type TorchResult } from '../torch.js';
import type { Kind } from './case.js';
import { log, type GpuOptions } from './options.js';

/** The PyTorch script's text, put in by bench/gpu/build.mjs; undefined when run from source. */
declare const __TORCH_GPU_PY__: string | undefined;

export interface TorchRow {
  median_ms: number | null;
  pipelined_ms: number | null;
  readback_ms: number | null;
  error?: string;
}
export type TorchReport = TorchResult<TorchRow>;

/** One case as torch_gpu.py reads it. */
export interface TorchSpecCase {
  name: string;
  kind: Kind | 'llama';
  params: Record<string, number | string | boolean>;
  pipeline: boolean;
}

export function runTorch(cases: TorchSpecCase[], o: GpuOptions): TorchReport {
  if (!o.torch) return { rows: new Map(), missing: '--no-torch' };
  const python = o.python ?? defaultPython();
  const dir = mkdtempSync(join(tmpdir(), 'inf-llava-bench-gpu-'));
  const script = join(dir, 'torch_gpu.py');
  const text = typeof __TORCH_GPU_PY__ === 'string' ? __TORCH_GPU_PY__ : readFileSync(new URL('./torch_gpu.py', import.meta.url), 'utf8');
  writeFileSync(script, text);
  const spec = join(dir, 'spec.json');
  writeFileSync(spec, JSON.stringify({ reps: o.reps, warmup: o.quick ? 1 : 2, cases }));
  log(`== torch: ${python} torch_gpu.py --device ${o.torchDevice}`);
  const r = spawnSync(python, [script, '--spec', spec, '--device', o.torchDevice, '--reps', String(o.reps)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: o.torchTimeoutS * 1000,
    maxBuffer: 64 << 20,
    encoding: 'utf8',
  });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return { rows: new Map(), missing: code === 'ENOENT' ? `${python} not found` : code === 'ETIMEDOUT' ? `timed out after ${o.torchTimeoutS} s` : r.error.message.split('\n')[0] };
  }
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  let parsed: { unavailable?: string; machine?: Record<string, unknown>; rows?: Array<TorchRow & { name: string }> };
  try {
    parsed = JSON.parse(last);
  } catch {
    return { rows: new Map(), missing: `${python} exited with ${r.status ?? r.signal} and no report${last ? ` (last line: ${last.slice(0, 200)})` : ''}` };
  }
  if (parsed.unavailable) return { rows: new Map(), missing: parsed.unavailable };
  return { machine: parsed.machine, rows: new Map((parsed.rows ?? []).map((row) => [row.name, row])) };
}

/** The line the Markdown report says about PyTorch. */
export function torchLine(torch: TorchReport): string {
  return torch.missing
    ? `torch: unavailable (${torch.missing})`
    : `PyTorch ${String(torch.machine?.torch)} on ${String(torch.machine?.card)} (${String(torch.machine?.device)}), fp32 with TF32 off, SDPA for attention`;
}
