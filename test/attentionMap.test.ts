// demAttentionMap / dualPerspectiveAttentionMaps against a direct float64 computation from the
// DEM definition (docs/spec.md): the projections, the window by its index formula, softmax.
// The probabilities are then pushed through the rest of the module (values, output projection,
// residual, LayerNorm) and must give the golden fixture's enhanced map at that position: the
// map is exactly what the DEM uses.
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import {
  demAttentionMap,
  dualPerspectiveAttentionMaps,
  readSafetensors,
  spatialEmbedFromStateDict,
  type DemAttentionWeights,
  type Grid,
} from '../src/index.js';
import { describeEachBackend, expectThrowsClean } from './backends.js';
import { expectClose } from './oracle.js';

const DIR = 'test/fixtures/dem';
type Map4 = { data: Float32Array; shape: number[] };

interface Weights64 {
  W: Float32Array[]; // query, key, value, output weights [d, d] (PyTorch [out, in])
  b: Float32Array[];
  lnW: Float32Array;
  lnB: Float32Array;
  heads: number;
}

async function weights64(w: DemAttentionWeights): Promise<Weights64> {
  const roles = ['query', 'key', 'value', 'output'] as const;
  return {
    W: await Promise.all(roles.map(async (r) => (await w[r].weight.data()) as Float32Array)),
    b: await Promise.all(roles.map(async (r) => (await w[r].bias!.data()) as Float32Array)),
    lnW: (await w.norm.weight.data()) as Float32Array,
    lnB: (await w.norm.bias.data()) as Float32Array,
    heads: w.heads,
  };
}

function at(m: Map4, R: number, C: number): Float64Array {
  const d = m.shape[3]!;
  const off = (R * m.shape[2]! + C) * d;
  return Float64Array.from(m.data.subarray(off, off + d));
}

function lin(x: Float64Array, W: Float32Array, b: Float32Array): Float64Array {
  const d = x.length;
  const out = new Float64Array(b.length);
  for (let o = 0; o < b.length; o++) {
    let s = b[o]!;
    for (let i = 0; i < d; i++) s += W[o * d + i]! * x[i]!;
    out[o] = s;
  }
  return out;
}

/** The window of (R, C) by the spec's index formulas: contiguous block, or the strided set. */
function windowOf(R: number, C: number, windows: 'local' | 'global', H: number, W: number, rows: number, cols: number): Array<[number, number]> {
  const h = H / rows;
  const w = W / cols;
  const out: Array<[number, number]> = [];
  if (windows === 'local') {
    const r0 = Math.floor(R / h) * h;
    const c0 = Math.floor(C / w) * w;
    for (let u = 0; u < h; u++) for (let v = 0; v < w; v++) out.push([r0 + u, c0 + v]);
  } else {
    for (let u = 0; u < h; u++) for (let v = 0; v < w; v++) out.push([(R % rows) + u * rows, (C % cols) + v * cols]);
  }
  return out;
}

/** Direct: per head, softmax over the window of q·k / sqrt(dk); returns probs [heads][window] and the window. */
function direct(q: Map4, kv: Map4, w: Weights64, R: number, C: number, windows: 'local' | 'global', rows: number, cols: number) {
  const [, H, W, d] = q.shape as [number, number, number, number];
  const dk = d / w.heads;
  const qv = lin(at(q, R, C), w.W[0]!, w.b[0]!);
  const win = windowOf(R, C, windows, H, W, rows, cols);
  const keys = win.map(([r, c]) => lin(at(kv, r, c), w.W[1]!, w.b[1]!));
  const probs: number[][] = [];
  for (let hd = 0; hd < w.heads; hd++) {
    const s = keys.map((k) => {
      let dot = 0;
      for (let j = 0; j < dk; j++) dot += qv[hd * dk + j]! * k[hd * dk + j]!;
      return dot / Math.sqrt(dk);
    });
    const m = Math.max(...s);
    const e = s.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    probs.push(e.map((v) => v / z));
  }
  return { probs, win };
}

/** The enhanced map at (R, C) from the probabilities: LN(output(Σ p·v) + q). */
function enhancedAt(probs: (hd: number, i: number) => number, win: Array<[number, number]>, q: Map4, kv: Map4, w: Weights64, R: number, C: number): Float64Array {
  const d = q.shape[3]!;
  const dk = d / w.heads;
  const values = win.map(([r, c]) => lin(at(kv, r, c), w.W[2]!, w.b[2]!));
  const merged = new Float64Array(d);
  for (let hd = 0; hd < w.heads; hd++) {
    values.forEach((v, i) => {
      for (let j = 0; j < dk; j++) merged[hd * dk + j]! += probs(hd, i) * v[hd * dk + j]!;
    });
  }
  const o = lin(merged, w.W[3]!, w.b[3]!);
  const x = at(q, R, C);
  const y = o.map((v, i) => v + x[i]!);
  const mean = y.reduce((a, b) => a + b, 0) / d;
  const varc = y.reduce((a, b) => a + (b - mean) ** 2, 0) / d;
  return y.map((v, i) => ((v - mean) / Math.sqrt(varc + 1e-5)) * w.lnW[i]! + w.lnB[i]!);
}

const cases = [
  { file: 'official_n3_d64.safetensors', positions: [[0, 0], [5, 7], [11, 11], [4, 9]] },
  { file: 'nonsquare_tiles_h4w6_n3_d48.safetensors', positions: [[0, 17], [7, 3], [11, 10]] },
  { file: 'windows_paper_n3_d32.safetensors', positions: [[1, 2], [8, 8]] },
] as const;

await describeEachBackend('DEM attention maps', () => {
  // Max |p − direct| measured over the four backends: 2.1e-8 (cpu) to 6.9e-8 (webgpu); the
  // enhanced map at the position: 4.9e-7 (every backend alike).
  const tol = 5e-7;
  const enhancedTol = 4e-6;
  for (const { file, positions } of cases) {
    it(`${file}: probabilities match the direct computation and reproduce the enhanced maps`, async () => {
      const { tensors: t, metadata: m } = readSafetensors(new Uint8Array(readFileSync(`${DIR}/${file}`)));
      try {
        const w = spatialEmbedFromStateDict(t, { heads: Number(m.heads) });
        const grid = JSON.parse(m.grid!) as [number, number];
        const [rows, cols] = grid;
        const mode = m.windows as 'official' | 'paper';
        const L = t['stage.L'] as tf.Tensor4D;
        const G = t['stage.G'] as tf.Tensor4D;
        const maps = { L: { data: (await L.data()) as Float32Array, shape: L.shape }, G: { data: (await G.data()) as Float32Array, shape: G.shape } };
        const enhanced = {
          local: { data: (await t['stage.enhanced_local']!.data()) as Float32Array, shape: t['stage.enhanced_local']!.shape },
          global: { data: (await t['stage.enhanced_global']!.data()) as Float32Array, shape: t['stage.enhanced_global']!.shape },
        };
        const w64 = await weights64(w.attention);
        const [, H, W] = L.shape;
        for (const [R, C] of positions) {
          const before = tf.memory().numTensors;
          const out = dualPerspectiveAttentionMaps(L, G, w.attention, { grid: grid as Grid, position: [R, C], windows: mode });
          expect(tf.memory().numTensors - before, 'two new tensors').toBe(2);
          const dirs = [
            // global as query over L; official: contiguous windows
            { got: out.global, q: maps.G, kv: maps.L, windows: mode === 'official' ? 'local' : 'global', ref: enhanced.global },
            { got: out.local, q: maps.L, kv: maps.G, windows: mode === 'official' ? 'global' : 'local', ref: enhanced.local },
          ] as const;
          for (const dir of dirs) {
            expect(dir.got.shape).toEqual([w.attention.heads, H, W]);
            const p = (await dir.got.data()) as Float32Array;
            const { probs, win } = direct(dir.q, dir.kv, w64, R, C, dir.windows, rows, cols);
            const inWindow = new Set(win.map(([r, c]) => r * W + c));
            for (let hd = 0; hd < w.attention.heads; hd++) {
              let sum = 0;
              for (let i = 0; i < H * W; i++) {
                const v = p[hd * H * W + i]!;
                sum += v;
                if (!inWindow.has(i)) expect(v, `head ${hd} position ${i} outside the window`).toBe(0);
              }
              expectClose([sum], [1], 0, 1e-5, `head ${hd}: probabilities sum to 1`);
              expectClose(win.map(([r, c]) => p[hd * H * W + r * W + c]!), probs[hd]!, 0, tol, `${dir.windows} windows at [${R}, ${C}], head ${hd}: p vs direct`);
            }
            // Through the rest of the module: the fixture's enhanced map at (R, C).
            const y = enhancedAt((hd, i) => p[hd * H * W + win[i]![0] * W + win[i]![1]]!, win, dir.q, dir.kv, w64, R, C);
            const ref = at(dir.ref, R, C);
            expectClose(y, ref, 0, enhancedTol, 'enhanced map at the position from these probabilities');
          }
          tf.dispose([out.global, out.local]);
        }
      } finally {
        tf.dispose(Object.values(t));
      }
    });
  }

  it('checks its arguments before any work', () => {
    const { tensors: t, metadata: m } = readSafetensors(new Uint8Array(readFileSync(`${DIR}/windows_paper_n3_d32.safetensors`)));
    try {
      const w = spatialEmbedFromStateDict(t, { heads: Number(m.heads) });
      const L = t['stage.L'] as tf.Tensor4D;
      const G = t['stage.G'] as tf.Tensor4D;
      const [, H, W] = L.shape;
      expectThrowsClean(() => demAttentionMap(G, L, w.attention, { grid: 3, windows: 'local', position: [H, 0] }), /outside the 9×9 map/);
      expectThrowsClean(() => demAttentionMap(G, L, w.attention, { grid: 3, windows: 'local', position: [0.5, 0] }), /position must be \[row, col\] of integers/);
      expectThrowsClean(() => demAttentionMap(G, L, w.attention, { grid: 3, windows: 'diagonal' as 'local', position: [0, 0] }), /opts.windows must be one of/);
      expectThrowsClean(() => demAttentionMap(G, L, w.attention, { grid: 3, position: [0, 0] } as never), /opts.windows is required/);
      expectThrowsClean(() => demAttentionMap(G, L, w.attention, { grid: 2, windows: 'local', position: [0, 0] }), /does not divide/);
      expectThrowsClean(() => demAttentionMap(G, L, w.attention, { grid: 3, windows: 'local', position: [0, W - 1], batch: 1 }), /opts.batch/);
      expectThrowsClean(() => dualPerspectiveAttentionMaps(L, G, w.attention, { grid: 3, position: [0, 0], windows: 'both' as 'paper' }), /opts.windows must be one of/);
    } finally {
      tf.dispose(Object.values(t));
    }
  });
});
