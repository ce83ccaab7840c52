/**
 * Starting a tfjs backend in Node by name: the optional peer package is imported on demand,
 * and `webgpu` is wired to Dawn (the `webgpu` npm package) before tfjs-backend-webgpu loads.
 * Import from `inf-llava/node`; nothing here runs at import time.
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs-core';
import { guardWasmHeap } from './wasmGuard.js';
import { registerWebGPUBackend } from './webgpuDevice.js';

/** The backends this library is tested on. */
export const BACKENDS = ['cpu', 'wasm', 'tensorflow', 'webgpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

/** Debian's Chromium ships SwiftShader's Vulkan driver: a software GPU Dawn accepts. */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** How to get each backend when it does not start. */
export const BACKEND_HINTS: Record<BackendName, string> = {
  cpu: 'npm install @tensorflow/tfjs-backend-cpu',
  wasm: 'npm install @tensorflow/tfjs-backend-wasm',
  tensorflow: 'npm install @tensorflow/tfjs-node (its install script downloads libtensorflow; offline, in a clone of inf-llava: npm run setup:tfjs-node)',
  webgpu: 'npm install @tensorflow/tfjs-backend-webgpu webgpu, and a Vulkan driver (no GPU: apt-get install chromium libvulkan1 for SwiftShader)',
};

async function installNodeWebGPU(): Promise<void> {
  const fs = await import('node:fs');
  if (!process.env.VK_ICD_FILENAMES && fs.existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const nav = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
  if (!nav?.gpu) {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    // Node 20 has no navigator, Node >= 21 a getter-only one: define rather than assign.
    Object.defineProperty(globalThis, 'navigator', { value: { ...(nav ?? {}), gpu: create([]) }, configurable: true, writable: true });
  }
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu'); // registers only if navigator.gpu exists now
  // Replace tfjs's backend factory with ours: the same device request, plus the 'subgroups'
  // feature where the adapter offers it (SwiftShader does), which tfjs 4.22 never asks for.
  registerWebGPUBackend(WebGPUBackend);
  // Else inputs under 1,000 elements silently run on the CPU for slice, transpose, concat…
  tf.env().set('WEBGPU_CPU_FORWARD', false);
}

const loaders: Record<BackendName, () => Promise<unknown>> = {
  cpu: () => import('@tensorflow/tfjs-backend-cpu'),
  wasm: () => import('@tensorflow/tfjs-backend-wasm'),
  tensorflow: () => import('@tensorflow/tfjs-node'),
  webgpu: installNodeWebGPU,
};

/** The npm packages each backend needs. */
const PACKAGES: Record<BackendName, string[]> = {
  cpu: ['@tensorflow/tfjs-backend-cpu'],
  wasm: ['@tensorflow/tfjs-backend-wasm'],
  tensorflow: ['@tensorflow/tfjs-node'],
  webgpu: ['webgpu', '@tensorflow/tfjs-backend-webgpu'],
};

/**
 * Why backend `backend` could not start, and what to do about it. `installed` is false when
 * one of its npm packages is missing (`fix` then says what to install); true when they are
 * there but the backend failed to load or start (`fix` then says how to repair that case).
 */
export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError';
  constructor(
    readonly backend: BackendName,
    readonly installed: boolean,
    /** The underlying failure, one line. */
    readonly reason: string,
    /** What to do: an install command, or the repair for an installed backend that fails. */
    readonly fix: string,
    options?: { cause?: unknown },
  ) {
    super(`useBackend: backend '${backend}' could not start: ${reason}. ${installed ? `To fix it: ${fix}; or use another backend` : `To get it: ${fix}`}`, options);
  }
}

const firstLine = (e: unknown) => ((e as Error)?.message ?? String(e)).split('\n')[0]!.trim().replace(/\.$/, '');

/** tfjs-node's package loads but its N-API binding (or the libtensorflow it links) does not. */
const NATIVE_FAILURE = /tfjs_binding|libtensorflow|native addon|\.node\b|shared object|dlopen|specified module could not be found/i;

/** The repair for an installed backend whose load or start failed with `reason`. */
function repairHint(name: BackendName, reason: string): string {
  switch (name) {
    case 'tensorflow':
      return NATIVE_FAILURE.test(reason)
        ? 'its native binding (tfjs_binding.node, with libtensorflow) is missing or does not load: run its install script, ' +
            'npm rebuild @tensorflow/tfjs-node, which downloads both (where install scripts are off, add --ignore-scripts=false)'
        : 'reinstall it with install scripts on: npm install @tensorflow/tfjs-node';
    case 'wasm':
      return 'reinstall it: npm install @tensorflow/tfjs-backend-wasm (its .wasm files must sit next to its dist/ files)';
    case 'cpu':
      return 'reinstall it: npm install @tensorflow/tfjs-backend-cpu';
    case 'webgpu':
      return BACKEND_HINTS.webgpu;
  }
}

/** A failed import of one of the backend's own packages by name (not of something inside it). */
function notInstalled(name: BackendName, e: unknown): boolean {
  const code = (e as { code?: string })?.code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  const m = (e as Error).message ?? '';
  return PACKAGES[name].some((p) => m.includes(`'${p}'`));
}

/** Runs backend `name`'s factory once more to learn why `tf.setBackend` returned false (tfjs only logs it). */
async function initFailure(name: BackendName): Promise<string> {
  const factory = tf.findBackendFactory(name);
  if (!factory) return `tf.setBackend('${name}') returned false`;
  try {
    const b = await factory();
    b?.dispose();
    return `tf.setBackend('${name}') returned false`;
  } catch (e) {
    return `initialization failed: ${firstLine(e)}`;
  }
}

/**
 * Loads, registers and activates backend `name` (`cpu`, `wasm`, `tensorflow` or `webgpu`),
 * then runs a one-op smoke test. Throws a {@link BackendUnavailableError} that says whether
 * the backend is installed and what to do: install it, or (installed but failing) repair it.
 */
export async function useBackend(name: BackendName): Promise<void> {
  if (!(BACKENDS as readonly string[]).includes(name)) {
    throw new Error(`useBackend: unknown backend ${JSON.stringify(name)}; expected one of ${BACKENDS.join(', ')}`);
  }
  try {
    await loaders[name]();
  } catch (e) {
    if (notInstalled(name, e)) throw new BackendUnavailableError(name, false, `not installed (${firstLine(e)})`, BACKEND_HINTS[name], { cause: e });
    const reason = firstLine(e);
    throw new BackendUnavailableError(name, true, reason, repairHint(name, reason), { cause: e });
  }
  try {
    if (!tf.findBackendFactory(name)) {
      // The package loaded but registered itself with another copy of tfjs-core.
      throw new BackendUnavailableError(
        name, true, `its package loaded but did not register '${name}' with this @tensorflow/tfjs-core (two copies installed?)`,
        'install one version of every @tensorflow package (npm ls @tensorflow/tfjs-core shows the copies; 4.22 for inf-llava)',
      );
    }
    if (!(await tf.setBackend(name))) throw new Error(await initFailure(name));
    await tf.ready();
    if (name === 'wasm') guardWasmHeap(); // an oversized allocation throws instead of aborting the module
    const y = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), 1));
    const v = await y.data();
    y.dispose();
    if (v[0] !== 2 || v[1] !== 3) throw new Error(`smoke test computed ${Array.from(v)}`);
  } catch (e) {
    if (e instanceof BackendUnavailableError) throw e;
    const reason = firstLine(e);
    throw new BackendUnavailableError(name, true, reason, repairHint(name, reason), { cause: e });
  }
}

/**
 * The backends {@link useFastestBackend} tries, fastest first. `webgpu` is not among them: in
 * Node it needs Dawn and a Vulkan driver, and a GPU is a choice to make on purpose
 * (`useBackend('webgpu')`).
 */
export const AUTO_BACKENDS = ['tensorflow', 'wasm', 'cpu'] as const satisfies readonly BackendName[];

/** What {@link useFastestBackend} chose, and why it passed over the faster ones. */
export interface FastestBackend {
  /** The backend now active. */
  backend: BackendName;
  /** The faster candidates that could not start, in the order tried. */
  skipped: BackendUnavailableError[];
  /**
   * One line for people, e.g. `wasm (fastest installed; tensorflow: not installed)`, or
   * `wasm (fastest that starts; tensorflow: installed but … — the fix)`.
   */
  summary: string;
}

/**
 * Starts the fastest of `candidates` (default {@link AUTO_BACKENDS}: tensorflow, then wasm,
 * then cpu) that is installed and starts, with {@link useBackend}. Throws when none does, with
 * each one's reason and how to get one.
 */
export async function useFastestBackend(candidates: readonly BackendName[] = AUTO_BACKENDS): Promise<FastestBackend> {
  if (candidates.length === 0) throw new Error('useFastestBackend: no candidate backends');
  const skipped: BackendUnavailableError[] = [];
  for (const name of candidates) {
    try {
      await useBackend(name);
    } catch (e) {
      if (!(e instanceof BackendUnavailableError)) throw e;
      skipped.push(e);
      continue;
    }
    return { backend: name, skipped, summary: summarize(name, skipped, candidates) };
  }
  const missing = skipped.filter((e) => !e.installed);
  const each = skipped.filter((e) => e.installed).map((e) => `${e.backend}: ${e.reason} (to fix it: ${e.fix})`);
  if (missing.length) each.push(`${missing.map((e) => e.backend).join(', ')}: not installed (to get one: ${missing.map((e) => e.fix).join('; or ')})`);
  throw new Error(`useFastestBackend: no backend could start. ${each.join('; ')}`);
}

function summarize(chosen: BackendName, skipped: BackendUnavailableError[], candidates: readonly BackendName[]): string {
  const broken = skipped.some((e) => e.installed);
  const parts: string[] = [candidates.length > 1 ? (broken ? 'fastest that starts' : 'fastest installed') : 'the only candidate'];
  // In the order tried; neighbours that are simply not installed share one entry.
  for (let i = 0; i < skipped.length; ) {
    const e = skipped[i]!;
    if (e.installed) {
      parts.push(`${e.backend}: installed but failed to start (${e.reason}); to fix it: ${e.fix}`);
      i++;
      continue;
    }
    const run: BackendName[] = [];
    while (i < skipped.length && !skipped[i]!.installed) run.push(skipped[i++]!.backend);
    // A faster pure-npm backend is one install away: say so (cpu chosen, wasm missing).
    const easy = run.includes('wasm') && chosen === 'cpu' ? ` — npm install ${PACKAGES.wasm[0]} for a faster one` : '';
    parts.push(`${run.join(', ')}: not installed${easy}`);
  }
  return `${chosen} (${parts.join('; ')})`;
}
