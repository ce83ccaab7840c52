/** Runs the PyTorch side (bench/torch/bench_torch.py) in the same run, if Python + torch exist. */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PyTorch's side of a run: its machine report and its rows by case name (here a median in ms; bench:gpu: gpu/torch.ts's rows). */
export interface TorchResult<R = number> {
  machine?: Record<string, unknown>;
  rows: Map<string, R>;
  /** Why there are no torch numbers, when there are none. */
  missing?: string;
}

/** The Python that runs the PyTorch side: the project's .venv (scripts/golden/setup-venv.sh) when there is one, else python3. */
export function defaultPython(): string {
  return existsSync('.venv/bin/python') ? '.venv/bin/python' : 'python3';
}

export function runTorch(only: string[] | undefined, quick: boolean): TorchResult {
  const python = defaultPython();
  const out = join(mkdtempSync(join(tmpdir(), 'inf-llava-torch-')), 'torch.json');
  const args = ['bench/torch/bench_torch.py', '--json', out, ...(quick ? ['--quick'] : []), ...(only ? ['--only', only.join(',')] : [])];
  try {
    execFileSync(python, args, { stdio: ['ignore', 'ignore', 'inherit'], timeout: 20 * 60_000 });
    const parsed = JSON.parse(readFileSync(out, 'utf8')) as { machine?: Record<string, unknown>; rows: Array<{ name: string; median_ms: number }> };
    return { machine: parsed.machine, rows: new Map(parsed.rows.map((r) => [r.name, r.median_ms])) };
  } catch (e) {
    const why = `PyTorch not run (${python} ${args[0]}: ${((e as Error).message ?? '').split('\n')[0]}); run bash scripts/golden/setup-venv.sh`;
    return { rows: new Map(), missing: why };
  }
}
