/**
 * Starting a tfjs backend in Node by name: the optional peer package is imported on demand,
 * and `webgpu` is wired to Dawn (the `webgpu` npm package) before tfjs-backend-webgpu loads.
 * Import from `inf-llava/node`; nothing here runs at import time.
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs-core';
import { guardWasmHeap } from './wasmGuard.js';

/** The backends this library is tested on. */
export const BACKENDS = ['cpu', 'wasm', 'tensorflow', 'webgpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

/** Debian's Chromium ships SwiftShader's Vulkan driver: a software GPU Dawn accepts. */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** How to get each backend when it does not start. */
export const BACKEND_HINTS: Record<BackendName, string> = {
  cpu: 'npm install @tensorflow/tfjs-backend-cpu',
  wasm: 'npm install @tensorflow/tfjs-backend-wasm',
  tensorflow: 'npm install @tensorflow/tfjs-node (offline: npm run setup:tfjs-node in this repository)',
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
  await import('@tensorflow/tfjs-backend-webgpu'); // registers only if navigator.gpu exists now
  // Else inputs under 1,000 elements silently run on the CPU for slice, transpose, concat…
  tf.env().set('WEBGPU_CPU_FORWARD', false);
}

const loaders: Record<BackendName, () => Promise<unknown>> = {
  cpu: () => import('@tensorflow/tfjs-backend-cpu'),
  wasm: () => import('@tensorflow/tfjs-backend-wasm'),
  tensorflow: () => import('@tensorflow/tfjs-node'),
  webgpu: installNodeWebGPU,
};

/**
 * Loads, registers and activates backend `name` (`cpu`, `wasm`, `tensorflow` or `webgpu`),
 * then runs a one-op smoke test. Throws an error that says how to get the backend.
 */
export async function useBackend(name: BackendName): Promise<void> {
  if (!(BACKENDS as readonly string[]).includes(name)) {
    throw new Error(`useBackend: unknown backend ${JSON.stringify(name)}; expected one of ${BACKENDS.join(', ')}`);
  }
  try {
    await loaders[name]();
    if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') returned false`);
    await tf.ready();
    if (name === 'wasm') guardWasmHeap(); // an oversized allocation throws instead of aborting the module
    const y = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), 1));
    const v = await y.data();
    y.dispose();
    if (v[0] !== 2 || v[1] !== 3) throw new Error(`smoke test computed ${Array.from(v)}`);
  } catch (e) {
    const first = ((e as Error).message ?? String(e)).split('\n')[0]!.trim();
    throw new Error(`useBackend: backend '${name}' could not start: ${first}. To get it: ${BACKEND_HINTS[name]}`);
  }
}
