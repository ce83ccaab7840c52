/** bench:gpu's command line (the flags are listed in run.ts's header and by --help), and its log. */
import type { BackendName } from '../../src/backends/node.js';

export interface GpuOptions {
  /** Tiny sizes, 1 rep: runs on SwiftShader (not a measurement). */
  quick: boolean;
  reps: number;
  /** Case-name substrings; undefined: every case. */
  only: string[] | undefined;
  /** The attention kernels to ask for (--kernels); undefined: the ones the op accepts. */
  kernels: string[] | undefined;
  backend: BackendName;
  /** false with --no-torch. */
  torch: boolean;
  torchDevice: string;
  /** --python; undefined: bench/torch.ts's defaultPython. */
  python: string | undefined;
  torchTimeoutS: number;
  maxMinutes: number;
  save: boolean;
  out: string | undefined;
  name: string | undefined;
}

const KNOWN = new Set(['quick', 'reps', 'only', 'kernels', 'backend', 'no-torch', 'torch-device', 'python', 'torch-timeout', 'max-minutes', 'save', 'out', 'name', 'help']);
const WITH_VALUE = new Set(['reps', 'only', 'kernels', 'backend', 'torch-device', 'python', 'torch-timeout', 'max-minutes', 'out', 'name']);
export const USAGE =
  'npm run bench:gpu -- [--quick] [--reps N] [--only a,b] [--kernels a,b] [--backend webgpu] [--no-torch] ' +
  '[--torch-device cuda|cpu] [--python P] [--torch-timeout S] [--max-minutes M] [--save | --out DIR] [--name SLUG]';

const list = (s: string | undefined) => s?.split(',').map((x) => x.trim()).filter(Boolean);

/** The options, or 'help' for --help; an unknown argument is an error (exit status 2). */
export function parseArgs(argv: string[]): GpuOptions | 'help' {
  const flag = (name: string) => argv.includes(`--${name}`);
  const value = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--') || !KNOWN.has(a.slice(2))) {
      console.error(`bench:gpu: unknown argument ${JSON.stringify(a)}; see the header of bench/gpu/run.ts (--help)`);
      process.exit(2);
    }
    if (WITH_VALUE.has(a.slice(2))) i++;
  }
  if (flag('help')) return 'help';
  const quick = flag('quick');
  return {
    quick,
    reps: Number(value('reps') ?? (quick ? 1 : 5)),
    only: list(value('only')),
    kernels: list(value('kernels')),
    backend: (value('backend') ?? 'webgpu') as BackendName,
    torch: !flag('no-torch'),
    torchDevice: value('torch-device') ?? 'cuda',
    python: value('python'),
    torchTimeoutS: Number(value('torch-timeout') ?? 240),
    maxMinutes: Number(value('max-minutes') ?? (quick ? 30 : 5)),
    save: flag('save'),
    out: value('out'),
    name: value('name'),
  };
}

/** Keeps the cases whose name contains one of --only's substrings (all without --only). */
export const selected = <C extends { name: string }>(cases: C[], only: string[] | undefined) => cases.filter((c) => !only || only.some((o) => c.name.includes(o)));

/** Progress goes to stderr; the tables to stdout. */
export const log = (s: string) => process.stderr.write(`${s}\n`);

export function firstLine(e: unknown): string {
  return ((e as Error)?.message ?? String(e)).split('\n')[0]!.slice(0, 300);
}
