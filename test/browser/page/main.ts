/**
 * The browser tests' harness page: the library's main entry (`src/index.ts`, bundled by Vite for
 * the browser) on the webgpu or wasm backend, driven from test/browser.test.ts through
 * `window.harness`. Tensors cross the page boundary as base64 of their bytes; every call reports
 * the tensors it left behind.
 */
import * as tf from '@tensorflow/tfjs-core';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu'; // navigator.gpu exists: the page is served from 127.0.0.1
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import {
  registerWebGPUBackend,
  webgpuHasSubgroups,
  dualPerspectiveEnhance,
  globalStrideCrop,
  linearConcatFuse,
  loadInfLlava,
  loadSafetensors,
  localCrop,
  readSafetensors,
  recombine2D,
  spatialEmbed,
  spatialEmbedFromStateDict,
  type Grid,
  type SpatialEmbedOptions,
} from '../../../src/index.js';

/** A tensor as it crosses into Node: dtype, shape, base64 of its little-endian bytes. */
export interface Encoded {
  dtype: 'float32' | 'int32';
  shape: number[];
  b64: string;
}

function toB64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromB64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

async function encode(t: tf.Tensor): Promise<Encoded> {
  const data = await t.data();
  const typed = t.dtype === 'int32' ? Int32Array.from(data) : Float32Array.from(data);
  return { dtype: t.dtype === 'int32' ? 'int32' : 'float32', shape: t.shape, b64: toB64(new Uint8Array(typed.buffer)) };
}

function decode(e: Encoded): tf.Tensor {
  const bytes = fromB64(e.b64);
  const values = e.dtype === 'int32' ? new Int32Array(bytes.buffer) : new Float32Array(bytes.buffer);
  return tf.tensor(values, e.shape, e.dtype);
}

async function fetchBytes(url: string): Promise<Uint8Array<ArrayBuffer>> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

let wasmPathsSet = false;
// As useBackend('webgpu') does in Node: tfjs's webgpu backend on a device with the features the
// library's kernels use (false where navigator.gpu is missing).
const ourWebGPU = registerWebGPUBackend(WebGPUBackend);

const harness = {
  /** Activates `name`; returns what runs (and the adapter, for webgpu). */
  async use(name: 'webgpu' | 'wasm'): Promise<{ backend: string; adapter?: string }> {
    if (!wasmPathsSet) {
      setWasmPaths(new URL('wasm/', location.href).href);
      wasmPathsSet = true;
    }
    let adapter: string | undefined;
    if (name === 'webgpu') {
      const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string } } | null> } }).gpu;
      const a = await gpu?.requestAdapter();
      if (!a) throw new Error('navigator.gpu gives no adapter');
      adapter = [a.info?.vendor, a.info?.architecture].filter(Boolean).join(' ');
      if (!ourWebGPU) throw new Error('registerWebGPUBackend(WebGPUBackend) returned false');
    }
    if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
    await tf.ready();
    if (name === 'webgpu' && webgpuHasSubgroups()) adapter += ', subgroups';
    // As in the Node tests: small inputs would otherwise run on the CPU for slice, transpose, concat…
    if (name === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
    return { backend: tf.getBackend(), adapter };
  },

  numTensors: (): number => tf.memory().numTensors,

  /** The crop of `x` for `perspective`, and recombine2D of it. */
  async dcm(x: Encoded, grid: Grid, perspective: 'local' | 'global'): Promise<{ tiles: Encoded; back: Encoded; left: number }> {
    const before = tf.memory().numTensors;
    const input = decode(x) as tf.Tensor4D;
    const tiles = perspective === 'local' ? localCrop(input, grid) : globalStrideCrop(input, grid);
    const back = recombine2D(tiles, grid, perspective);
    const out = { tiles: await encode(tiles), back: await encode(back) };
    tf.dispose([input, tiles, back]);
    return { ...out, left: tf.memory().numTensors - before };
  },

  /** Every stage of a golden DEM fixture (test/fixtures/dem), from its own inputs. */
  async dem(url: string): Promise<{ stages: Record<string, Encoded>; left: number }> {
    const before = tf.memory().numTensors;
    const { tensors: t, metadata: m } = readSafetensors(await fetchBytes(url));
    try {
      const w = spatialEmbedFromStateDict(t, { heads: Number(m.heads) });
      const grid = JSON.parse(m.grid!) as Grid;
      const opts: SpatialEmbedOptions = {
        grid,
        mode: m.mode as SpatialEmbedOptions['mode'],
        windows: m.windows as SpatialEmbedOptions['windows'],
        order: m.order as SpatialEmbedOptions['order'],
        reduce: m.reduce as SpatialEmbedOptions['reduce'],
        outSize: JSON.parse(m.out_size!) as [number, number],
      };
      const lt = t['input.local_tiles'] as tf.Tensor4D;
      const gt = t['input.global_tiles'] as tf.Tensor4D;
      const L = recombine2D(lt, grid, 'local');
      const G = recombine2D(gt, grid, 'global');
      const e = dualPerspectiveEnhance(t['stage.L'] as tf.Tensor4D, t['stage.G'] as tf.Tensor4D, w.attention, opts);
      const fused = linearConcatFuse(t['stage.enhanced_local'] as tf.Tensor4D, t['stage.enhanced_global'] as tf.Tensor4D, w.fuse, opts);
      const out = spatialEmbed(lt, gt, w, opts);
      const made = { 'stage.L': L, 'stage.G': G, 'stage.enhanced_local': e.local, 'stage.enhanced_global': e.global, 'stage.fused': fused, output: out };
      const stages: Record<string, Encoded> = {};
      for (const [k, v] of Object.entries(made)) stages[k] = await encode(v);
      tf.dispose(Object.values(made));
      return { stages, left: tf.memory().numTensors - before - Object.keys(t).length };
    } finally {
      tf.dispose(Object.values(t));
    }
  },

  /** `loadSafetensors(url, { prefix })`: every tensor it made. */
  async loadSafetensors(url: string, prefix?: string): Promise<{ tensors: Record<string, Encoded>; left: number }> {
    const before = tf.memory().numTensors;
    const { tensors } = await loadSafetensors(url, prefix === undefined ? {} : { prefix });
    const out: Record<string, Encoded> = {};
    for (const [k, v] of Object.entries(tensors)) out[k] = await encode(v);
    tf.dispose(Object.values(tensors));
    return { tensors: out, left: tf.memory().numTensors - before };
  },

  /** `loadSafetensors(url)` expected to fail: its message (or null when it loaded). */
  async loadSafetensorsError(url: string): Promise<string | null> {
    try {
      const { tensors } = await loadSafetensors(url);
      tf.dispose(Object.values(tensors));
      return null;
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  },

  /**
   * `loadInfLlava` from a base URL (`from: 'url'`) or from the `File`s of its files fetched into
   * the page (`from: 'files'`, as a picked folder gives them), then one greedy `generate`.
   */
  async generate(from: 'url' | 'files', base: string, files: string[], image: Encoded, question: string, maxNewTokens: number) {
    const before = tf.memory().numTensors;
    const source = from === 'url' ? base : await Promise.all(files.map(async (f) => new File([await fetchBytes(new URL(f, base).href)], f)));
    const model = await loadInfLlava(source);
    const rgb = decode(image) as tf.Tensor3D;
    const streamed: string[] = [];
    try {
      const r = await model.generate({ image: rgb, question, maxNewTokens, onToken: (s) => streamed.push(s) });
      return { text: r.text, tokens: r.tokens, stopReason: r.stopReason, timings: r.timings, streamed };
    } finally {
      rgb.dispose();
      model.dispose();
      const left = tf.memory().numTensors - before;
      if (left !== 0) throw new Error(`generate: ${left} tensors left behind`);
    }
  },
};

declare global {
  interface Window {
    harness: typeof harness;
  }
}
window.harness = harness;
document.body.dataset.state = 'ready';
