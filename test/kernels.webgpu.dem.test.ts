// The DEM's ops and their webgpu kernels: windowAttention (src/ops/windowedAttention.ts, kernel
// src/kernels/webgpu/windowedFlashAttention.ts) and resizeBilinear (src/ops/resizeBilinear.ts,
// kernel src/kernels/webgpu/bilinearDown.ts). Every backend: each op's composition against a
// float64 reference written out loop by loop (both window kinds, token counts that are not tile
// multiples; bilinear up and down), and bad inputs named. On webgpu: the kernels against the same
// references, and windowedAttention / spatialEmbed / dualPerspectiveEnhance with the kernels
// (demKernels.enabled) against the composition (disabled) on random maps, grids 3 and [2, 3],
// heads 2 and 4, dk 8 and 16; the kernels a spatialEmbed call dispatches (tf.profile); tf.grad
// runs the composition. Comparisons are element by element.
import '@tensorflow/tfjs'; // registers gradient kernels (same tfjs-core instance)
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { dualPerspectiveEnhance, initSpatialEmbed, spatialEmbed, type SpatialEmbedWeights } from '../src/index.js';
import { demKernels, windowedAttention } from '../src/dem/attention.js';
import { resizeBilinear } from '../src/ops/resizeBilinear.js';
import { windowAttention, type WindowAttentionOptions } from '../src/ops/windowedAttention.js';
import { WINDOWED_ATTENTION_KERNEL } from '../src/kernels/webgpu/windowedFlashAttention.js';
import { BILINEAR_DOWN_KERNEL } from '../src/kernels/webgpu/bilinearDown.js';
import { describeEachBackend, expectThrowsClean } from './backends.js';
import { expectClose, randomData } from './oracle.js';

// Element-wise tolerances, |a − e| ≤ atol + rtol·|e|, from the worst elements measured on every backend.
/** windowAttention vs float64 (outputs ≤ 0.82): the worst element uses 0.41 of it (a CPU backend's composition; the kernel's 2.6e-7 error less). */
const WIN = { rtol: 3e-6, atol: 3e-7 };
/** resizeBilinear vs float64 (outputs ≤ 1; source coordinates in float32): the worst element uses 0.39 of it (1.1e-6, a CPU backend). */
const BIL = { rtol: 1e-5, atol: 2e-6 };
/** The DEM with its kernels vs on the compositions (outputs ≤ 2.8, after LayerNorm; SwiftShader): the worst element uses 0.34 of it. */
const DEM = { rtol: 2e-6, atol: 1e-7 };

type Shape4 = [number, number, number, number];

/** `f` with the DEM kernels on (default) or off (composition); the value, and the kernel names tf.profile saw. */
async function run(f: () => tf.Tensor, kernels: boolean): Promise<{ data: Float32Array; names: string[] }> {
  demKernels.enabled = kernels;
  try {
    let out: tf.Tensor | undefined;
    const info = await tf.profile(() => (out = tf.tidy(f)));
    const data = (await out!.data()) as Float32Array;
    out!.dispose();
    return { data, names: info.kernels.map((k) => k.name) };
  } finally {
    demKernels.enabled = true;
  }
}

function disposeAll(w: SpatialEmbedWeights): void {
  const all: tf.Tensor[] = [];
  const walk = (x: unknown) => {
    if (x instanceof tf.Tensor) all.push(x);
    else if (x && typeof x === 'object') Object.values(x).forEach(walk);
  };
  walk(w);
  tf.dispose(all);
}

/**
 * softmax(q·kᵀ·scale)·v within each window and head of maps `[B, H, W, heads·dk]`, in float64:
 * token (u, x) of window (r, c) is pixel (r·h + u, c·w + x) (local) or (u·rows + r, x·cols + c) (global).
 */
function windowAttentionReference(q: Float32Array, k: Float32Array, v: Float32Array, [B, H, W, C]: Shape4, heads: number, rows: number, cols: number, windows: 'local' | 'global', scale: number): Float64Array {
  const [h, w, dk] = [H / rows, W / cols, C / heads];
  const out = new Float64Array(B * H * W * C);
  const pix = new Int32Array(h * w);
  const s = new Float64Array(h * w);
  for (let b = 0; b < B; b++)
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) {
        for (let u = 0; u < h; u++)
          for (let x = 0; x < w; x++) {
            const [py, px] = windows === 'local' ? [r * h + u, c * w + x] : [u * rows + r, x * cols + c];
            pix[u * w + x] = ((b * H + py) * W + px) * C;
          }
        for (let e = 0; e < heads; e++)
          for (let i = 0; i < h * w; i++) {
            let mx = -Infinity;
            for (let j = 0; j < h * w; j++) {
              let dot = 0;
              for (let d = 0; d < dk; d++) dot += q[pix[i]! + e * dk + d]! * k[pix[j]! + e * dk + d]!;
              s[j] = dot * scale;
              mx = Math.max(mx, s[j]!);
            }
            let total = 0;
            for (let j = 0; j < h * w; j++) total += s[j] = Math.exp(s[j]! - mx);
            for (let j = 0; j < h * w; j++)
              for (let d = 0; d < dk; d++) out[pix[i]! + e * dk + d] = out[pix[i]! + e * dk + d]! + (s[j]! / total) * v[pix[j]! + e * dk + d]!;
          }
      }
  return out;
}

/** PyTorch's bilinear resize with align_corners=False in float64: source max((o + ½)·in/out − ½, 0), neighbours clamped. */
function bilinearReference(x: Float32Array, [B, H, W, C]: Shape4, [oh, ow]: [number, number]): Float64Array {
  const axis = (o: number, n: number, m: number) => {
    const src = Math.max((o + 0.5) * (n / m) - 0.5, 0);
    const i0 = Math.min(Math.floor(src), n - 1);
    return [i0, Math.min(i0 + 1, n - 1), src - i0] as const;
  };
  const out = new Float64Array(B * oh * ow * C);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < oh; i++) {
      const [y0, y1, fy] = axis(i, H, oh);
      for (let j = 0; j < ow; j++) {
        const [x0, x1, fx] = axis(j, W, ow);
        for (let ch = 0; ch < C; ch++) {
          const at = (y: number, xx: number) => x[((b * H + y) * W + xx) * C + ch]!;
          const top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx;
          const bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx;
          out[((b * oh + i) * ow + j) * C + ch] = top * (1 - fy) + bottom * fy;
        }
      }
    }
  return out;
}

interface Case {
  B: number;
  grid: [number, number];
  h: number;
  w: number;
  heads: number;
  dk: number;
}
const CASES: Case[] = [
  { B: 1, grid: [3, 3], h: 5, w: 7, heads: 2, dk: 8 }, // 35 tokens per window
  { B: 2, grid: [2, 3], h: 9, w: 8, heads: 4, dk: 16 }, // 72 tokens: two query blocks, two key tiles
  { B: 1, grid: [3, 3], h: 3, w: 4, heads: 4, dk: 8 },
  { B: 1, grid: [2, 3], h: 4, w: 5, heads: 2, dk: 16 },
];
const mapShape = (c: Case): Shape4 => [c.B, c.grid[0] * c.h, c.grid[1] * c.w, c.heads * c.dk];

const BILINEAR: Array<[Shape4, [number, number]]> = [
  [[1, 9, 12, 5], [3, 4]],
  [[1, 9, 12, 5], [4, 5]],
  [[1, 9, 12, 5], [13, 7]],
  [[1, 72, 72, 8], [24, 24]],
];

await describeEachBackend('DEM webgpu kernels', (backend) => {
  const gpu = backend === 'webgpu';
  const kernels = gpu ? (['composition', 'fused'] as const) : (['composition'] as const);

  it(`windowAttention: ${gpu ? 'the composition and the kernel' : 'the composition'} close to float64, local and global windows, ${CASES.length} shapes`, async () => {
    for (const c of CASES) {
      const shape = mapShape(c);
      const size = shape.reduce((a, b) => a * b);
      const [qd, kd, vd] = [randomData(size, 3).map((x) => x * 3), randomData(size, 4), randomData(size, 5)];
      const [q, k, v] = [tf.tensor4d(qd, shape), tf.tensor4d(kd, shape), tf.tensor4d(vd, shape)];
      for (const windows of ['local', 'global'] as const) {
        const ref = windowAttentionReference(qd, kd, vd, shape, c.heads, c.grid[0], c.grid[1], windows, 1 / Math.sqrt(c.dk));
        for (const kernel of kernels) {
          const before = tf.memory().numTensors;
          let y: tf.Tensor | undefined;
          const info = await tf.profile(() => (y = windowAttention(q, k, v, { heads: c.heads, rows: c.grid[0], cols: c.grid[1], windows, kernel })));
          expect(tf.memory().numTensors - before, 'one new tensor').toBe(1);
          expect(info.kernels.map((x) => x.name).includes(WINDOWED_ATTENTION_KERNEL)).toBe(kernel === 'fused');
          expect(y!.shape).toEqual(shape);
          expectClose(await y!.data(), ref, WIN.rtol, WIN.atol, `${JSON.stringify(c)} ${windows} ${kernel} vs float64`);
          y!.dispose();
        }
      }
      tf.dispose([q, k, v]);
    }
  });

  for (const [shape, size] of BILINEAR) {
    it(`resizeBilinear ${JSON.stringify(shape)} → ${JSON.stringify(size)}: ${gpu ? 'the composition and the kernel' : 'the composition'} close to float64${shape[1] === 72 && gpu ? '; the kernel samples pixel 3i+1 exactly (factor 3)' : ''}`, async () => {
      const xd = randomData(shape.reduce((a, b) => a * b), 7);
      const x = tf.tensor4d(xd, shape);
      const ref = bilinearReference(xd, shape, size);
      for (const kernel of kernels) {
        let y: tf.Tensor | undefined;
        const info = await tf.profile(() => (y = resizeBilinear(x, size, { kernel })));
        expect(info.kernelNames.includes(BILINEAR_DOWN_KERNEL)).toBe(kernel === 'fused');
        expect(y!.shape).toEqual([shape[0], size[0], size[1], shape[3]]);
        const got = (await y!.data()) as Float32Array;
        y!.dispose();
        expectClose(got, ref, BIL.rtol, BIL.atol, `${kernel} vs float64`);
        if (kernel === 'fused' && shape[1] === 72) {
          for (let i = 0; i < 24; i++)
            for (let j = 0; j < 24; j++)
              for (let ch = 0; ch < 8; ch++) expect(got[(i * 24 + j) * 8 + ch]).toBe(xd[((3 * i + 1) * 72 + 3 * j + 1) * 8 + ch]);
        }
      }
      x.dispose();
    });
  }

  it(`windowAttention and resizeBilinear: bad inputs name the argument, before any work, leaving no tensor behind; ${gpu ? "'fused' refused under tf.grad and for head widths above 256" : "'fused' refused off webgpu"}`, () => {
    const shape: Shape4 = [1, 6, 6, 8];
    const q = tf.tensor4d(randomData(288, 1), shape);
    const k5 = tf.zeros([1, 6, 5, 8]) as tf.Tensor4D;
    const vi = tf.zeros(shape, 'int32') as tf.Tensor4D;
    const x3 = tf.zeros([2, 3, 4]) as unknown as tf.Tensor4D;
    const base: WindowAttentionOptions = { heads: 2, rows: 3, cols: 3, windows: 'local' };
    const wa = (o: object, k: tf.Tensor4D = q, v: tf.Tensor4D = q) => () => windowAttention(q, k, v, { ...base, ...o } as WindowAttentionOptions);
    expectThrowsClean(() => windowAttention(null as unknown as tf.Tensor4D, q, q, base), /windowAttention: q must be a tensor \[B, H, W, heads·dk\], got null/);
    expectThrowsClean(wa({}, k5), /windowAttention: q \[1,6,6,8\] and k \[1,6,5,8\] must have the same shape/);
    expectThrowsClean(wa({}, q, vi), /windowAttention: v must be float32, got int32/);
    expectThrowsClean(() => windowAttention(x3, x3, x3, base), /windowAttention: q must be \[B, H, W, heads·dk\], got shape \[2,3,4\]/);
    expectThrowsClean(wa({ heads: 3 }), /windowAttention: opts.heads 3 does not divide the 8 channels of q \[1,6,6,8\]/);
    expectThrowsClean(wa({ heads: undefined }), /windowAttention: opts.heads must be a positive integer, got undefined/);
    expectThrowsClean(wa({ rows: 4 }), /windowAttention: opts.rows × opts.cols = 4 × 3 windows do not divide the 6 × 6 map of q \[1,6,6,8\]/);
    expectThrowsClean(wa({ cols: 0 }), /windowAttention: opts.cols must be a positive integer, got 0/);
    expectThrowsClean(wa({ windows: 'diagonal' }), /windowAttention: opts.windows must be one of local, global, got "diagonal"/);
    expectThrowsClean(wa({ scale: Number.NaN }), /windowAttention: opts.scale must be a finite number, got NaN/);
    expectThrowsClean(wa({ layout: 'tiled' }), /windowAttention: opts.layout must be one of auto, batched, per-window, per-head, got "tiled"/);
    expectThrowsClean(wa({ kernel: 'fast' }), /windowAttention: opts.kernel must be one of auto, fused, composition, got "fast"/);
    expectThrowsClean(wa({ head: 2 }), /windowAttention: unknown option "head" \(did you mean heads\?\); options: heads, rows, cols, windows, scale, layout, kernel/);
    expectThrowsClean(() => resizeBilinear(vi, [3, 3]), /resizeBilinear: x must be float32, got int32/);
    expectThrowsClean(() => resizeBilinear(x3, [3, 3]), /resizeBilinear: x must be \[B, H, W, C\], got shape \[2,3,4\]/);
    expectThrowsClean(() => resizeBilinear(q, [0, 3]), /resizeBilinear: size must be \[height, width\] of positive integers, got \[0,3\]/);
    expectThrowsClean(() => resizeBilinear(q, [3, 3], { kernal: 'fused' } as object), /resizeBilinear: unknown option "kernal" \(did you mean kernel\?\); options: kernel/);
    expectThrowsClean(() => resizeBilinear(q, [3, 3], { kernel: 'fast' as 'fused' }), /resizeBilinear: opts.kernel must be one of auto, fused, composition, got "fast"/);
    if (gpu) {
      const tape = /opts.kernel 'fused' cannot run here: a gradient tape is recording/;
      expect(() => tf.grad((x: tf.Tensor) => tf.sum(windowAttention(x as tf.Tensor4D, q, q, { ...base, kernel: 'fused' })))(q)).toThrow(new RegExp(`windowAttention: ${tape.source}`));
      expect(() => tf.grad((x: tf.Tensor) => tf.sum(resizeBilinear(x as tf.Tensor4D, [3, 3], { kernel: 'fused' })))(q)).toThrow(new RegExp(`resizeBilinear: ${tape.source}`));
      const wide = tf.zeros([1, 2, 2, 2 * 260]) as tf.Tensor4D;
      expectThrowsClean(() => windowAttention(wide, wide, wide, { heads: 2, rows: 1, cols: 1, windows: 'local', kernel: 'fused' }), /windowAttention: opts.kernel 'fused' cannot run here: head widths above 256 \(dk 260, dv 260\)/);
      wide.dispose();
    } else {
      const off = `opts.kernel 'fused' cannot run here: it runs on the webgpu backend only \\(active: ${backend}\\)`;
      expectThrowsClean(wa({ kernel: 'fused' }), new RegExp(`windowAttention: ${off}`));
      expectThrowsClean(() => resizeBilinear(q, [3, 3], { kernel: 'fused' }), new RegExp(`resizeBilinear: ${off}`));
    }
    tf.dispose([q, k5, vi, x3]);
  });

  // The DEM with its ops' kernels against the DEM on their compositions: only where the kernels run.
  if (!gpu) return;

  for (const c of CASES)
    for (const windows of ['local', 'global'] as const) {
      it(`windowedAttention ${JSON.stringify(c)} ${windows} windows: with the windowed kernel, close to the composition`, async () => {
        const d = c.heads * c.dk;
        const shape = mapShape(c);
        const size = shape.reduce((a, b) => a * b);
        const w = initSpatialEmbed(d, { heads: c.heads, hidden: 4, seed: d + c.h });
        const q = tf.tensor4d(randomData(size, 3).map((x) => x * 3), shape);
        const kv = tf.tensor4d(randomData(size, 4), shape);
        const f = () => windowedAttention(q, kv, w.attention, c.grid[0], c.grid[1], windows);
        const ref = await run(f, false);
        const got = await run(f, true);
        expect(ref.names).not.toContain(WINDOWED_ATTENTION_KERNEL);
        expect(got.names).toContain(WINDOWED_ATTENTION_KERNEL);
        expectClose(got.data, ref.data, DEM.rtol, DEM.atol, 'windowedAttention: kernels vs composition');
        tf.dispose([q, kv]);
        disposeAll(w);
      });
    }

  for (const c of [
    { B: 1, grid: [3, 3] as [number, number], h: 4, w: 5, d: 16, heads: 2, outSize: [4, 5] as [number, number] },
    { B: 1, grid: [2, 3] as [number, number], h: 6, w: 4, d: 32, heads: 4, outSize: [5, 7] as [number, number] },
  ]) {
    it(`spatialEmbed and dualPerspectiveEnhance ${JSON.stringify(c)}: with the kernels, close to the composition; kernel count (tf.profile)`, async () => {
      const tileShape: Shape4 = [c.B * c.grid[0] * c.grid[1], c.h, c.w, c.d];
      const n = tileShape.reduce((a, b) => a * b);
      const w = initSpatialEmbed(c.d, { heads: c.heads, hidden: 4, seed: 5 });
      const lt = tf.tensor4d(randomData(n, 11), tileShape);
      const gt = tf.tensor4d(randomData(n, 12), tileShape);
      const se = () => spatialEmbed(lt, gt, w, { grid: c.grid, outSize: c.outSize });
      const ref = await run(se, false);
      const got = await run(se, true);
      expectClose(got.data, ref.data, DEM.rtol, DEM.atol, 'spatialEmbed: kernels vs composition');
      // Reshape is a view and 'unnamed scope' a custom-gradient scope: neither dispatches a shader.
      const dispatches = (names: string[]) => names.filter((k) => k !== 'Reshape' && k !== 'unnamed scope').length;
      console.log(`[${backend}] spatialEmbed ${JSON.stringify(c)}: ${ref.names.length} kernels, ${dispatches(ref.names)} dispatches (composition) → ${got.names.length} kernels, ${dispatches(got.names)} dispatches (DEM kernels)`);
      const hist = (names: string[]) => JSON.stringify(Object.fromEntries([...new Set(names)].map((k) => [k, names.filter((x) => x === k).length])));
      console.log(`[${backend}]   composition ${hist(ref.names)}\n[${backend}]   DEM kernels ${hist(got.names)}`);
      expect(got.names.filter((k) => k === WINDOWED_ATTENTION_KERNEL)).toHaveLength(2);
      expect(got.names).toContain(BILINEAR_DOWN_KERNEL);
      expect(ref.names).not.toContain(BILINEAR_DOWN_KERNEL);
      expect(got.names.length).toBeLessThan(ref.names.length);
      // The only transposes left are recombine2D's (tiles → map), one per perspective.
      expect(got.names.filter((k) => k === 'Transpose')).toHaveLength(2);

      const shape: Shape4 = [c.B, c.grid[0] * c.h, c.grid[1] * c.w, c.d];
      const L = tf.tensor4d(randomData(n, 13), shape);
      const G = tf.tensor4d(randomData(n, 14), shape);
      for (const windows of ['official', 'paper'] as const) {
        const dpe = () => {
          const o = dualPerspectiveEnhance(L, G, w.attention, { grid: c.grid, windows });
          return tf.tidy(() => {
            const r = tf.concat([o.local, o.global], 3);
            tf.dispose([o.local, o.global]);
            return r;
          });
        };
        const r2 = await run(dpe, false);
        const g2 = await run(dpe, true);
        expectClose(g2.data, r2.data, DEM.rtol, DEM.atol, `dualPerspectiveEnhance ${windows}: kernels vs composition`);
      }
      tf.dispose([lt, gt, L, G]);
      disposeAll(w);
    });
  }

  it('under tf.grad the composition runs (the kernels have no gradient): the same gradient as with the kernels disabled', async () => {
    const shape: Shape4 = [1, 6, 6, 8];
    const w = initSpatialEmbed(8, { heads: 2, hidden: 4, seed: 2 });
    const q = tf.tensor4d(randomData(36 * 8, 21), shape);
    const kv = tf.tensor4d(randomData(36 * 8, 22), shape);
    const grad = (kernels: boolean) => {
      demKernels.enabled = kernels;
      try {
        return tf.grad((x: tf.Tensor) => tf.sum(tf.square(windowedAttention(x as tf.Tensor4D, kv, w.attention, 3, 3, 'global'))))(q);
      } finally {
        demKernels.enabled = true;
      }
    };
    let g: tf.Tensor | undefined;
    const info = await tf.profile(() => (g = grad(true)));
    expect(info.kernelNames).not.toContain(WINDOWED_ATTENTION_KERNEL);
    const r = grad(false);
    expect(Array.from(await g!.data()), 'grad: kernels enabled = disabled (both the composition)').toEqual(Array.from(await r.data()));
    tf.dispose([q, kv, g!, r]);
    disposeAll(w);
  });
});
