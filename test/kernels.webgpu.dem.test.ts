// The DEM's webgpu kernels (src/kernels/webgpu/windowedFlashAttention.ts, bilinearDown.ts) behind
// windowedAttention and spatialEmbed: against the composition of tfjs ops (demKernels.enabled =
// false, the reference and the fallback) on random maps, grids 3 and [2, 3], both window kinds,
// heads 2 and 4, dk 8 and 16, windows of token counts that are not tile multiples; the bilinear
// kernel against the op and tfjs's resizeBilinear; spatialEmbed and dualPerspectiveEnhance with
// the kernels equal to the composition; the kernels a spatialEmbed call dispatches (tf.profile);
// tf.grad runs the composition. On the other backends the composition runs (no kernel listed).
import '@tensorflow/tfjs'; // registers gradient kernels (same tfjs-core instance)
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { dualPerspectiveEnhance, initSpatialEmbed, spatialEmbed, type SpatialEmbedWeights } from '../src/index.js';
import { demKernels, windowedAttention } from '../src/dem/attention.js';
import { resizeBilinear } from '../src/ops/resizeBilinear.js';
import { WINDOWED_ATTENTION_KERNEL } from '../src/kernels/webgpu/windowedFlashAttention.js';
import { BILINEAR_DOWN_KERNEL, bilinearDown } from '../src/kernels/webgpu/bilinearDown.js';
import { describeEachBackend } from './backends.js';
import { maxRelErr, randomData } from './oracle.js';

const TOL = 1e-5;

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

await describeEachBackend('DEM webgpu kernels', (backend) => {
  const gpu = backend === 'webgpu';

  for (const c of CASES)
    for (const windows of ['local', 'global'] as const) {
      it(`windowedAttention ${JSON.stringify(c)} ${windows} windows: ${gpu ? 'the windowed kernel equals' : 'runs'} the composition`, async () => {
        const d = c.heads * c.dk;
        const shape: [number, number, number, number] = [c.B, c.grid[0] * c.h, c.grid[1] * c.w, d];
        const size = shape.reduce((a, b) => a * b);
        const w = initSpatialEmbed(d, { heads: c.heads, hidden: 4, seed: d + c.h });
        const q = tf.tensor4d(randomData(size, 3).map((x) => x * 3), shape);
        const kv = tf.tensor4d(randomData(size, 4), shape);
        const f = () => windowedAttention(q, kv, w.attention, c.grid[0], c.grid[1], windows);
        const ref = await run(f, false);
        const got = await run(f, true);
        expect(ref.names).not.toContain(WINDOWED_ATTENTION_KERNEL);
        if (gpu) expect(got.names).toContain(WINDOWED_ATTENTION_KERNEL);
        else expect(got.names).not.toContain(WINDOWED_ATTENTION_KERNEL);
        expect(maxRelErr(got.data, ref.data, 'windowedAttention')).toBeLessThanOrEqual(TOL);
        tf.dispose([q, kv]);
        disposeAll(w);
      });
    }

  for (const [shape, size] of [
    [[1, 9, 12, 5], [3, 4]],
    [[1, 9, 12, 5], [4, 5]],
    [[1, 9, 12, 5], [13, 7]],
    [[1, 72, 72, 8], [24, 24]],
  ] as Array<[[number, number, number, number], [number, number]]>) {
    it(`bilinear ${JSON.stringify(shape)} → ${JSON.stringify(size)}${gpu ? ': the kernel equals the op and tfjs resizeBilinear(half-pixel)' : ''}`, async () => {
      const x = tf.tensor4d(randomData(shape.reduce((a, b) => a * b), 7), shape);
      const op = resizeBilinear(x, size);
      const tfjs = tf.image.resizeBilinear(x, size, false, true);
      const opData = (await op.data()) as Float32Array;
      const tfjsData = (await tfjs.data()) as Float32Array;
      if (gpu) {
        const k = bilinearDown(x, size);
        expect(k.shape).toEqual([shape[0], size[0], size[1], shape[3]]);
        const kData = (await k.data()) as Float32Array;
        expect(maxRelErr(kData, opData, 'vs op')).toBeLessThanOrEqual(TOL);
        expect(maxRelErr(kData, tfjsData, 'vs tfjs')).toBeLessThanOrEqual(TOL);
        if (shape[1] === 72) {
          // factor 3: pixel 3i+1 exactly
          const xd = (await x.data()) as Float32Array;
          for (let i = 0; i < 24; i++)
            for (let j = 0; j < 24; j++)
              for (let ch = 0; ch < 8; ch++) expect(kData[(i * 24 + j) * 8 + ch]).toBe(xd[((3 * i + 1) * 72 + 3 * j + 1) * 8 + ch]);
        }
        k.dispose();
      }
      expect(maxRelErr(opData, tfjsData, 'op vs tfjs')).toBeLessThanOrEqual(TOL);
      tf.dispose([x, op, tfjs]);
    });
  }

  for (const c of [
    { B: 1, grid: [3, 3] as [number, number], h: 4, w: 5, d: 16, heads: 2, outSize: [4, 5] as [number, number] },
    { B: 1, grid: [2, 3] as [number, number], h: 6, w: 4, d: 32, heads: 4, outSize: [5, 7] as [number, number] },
  ]) {
    it(`spatialEmbed and dualPerspectiveEnhance ${JSON.stringify(c)}: kernels equal the composition; kernel count (tf.profile)`, async () => {
      const tileShape: [number, number, number, number] = [c.B * c.grid[0] * c.grid[1], c.h, c.w, c.d];
      const n = tileShape.reduce((a, b) => a * b);
      const w = initSpatialEmbed(c.d, { heads: c.heads, hidden: 4, seed: 5 });
      const lt = tf.tensor4d(randomData(n, 11), tileShape);
      const gt = tf.tensor4d(randomData(n, 12), tileShape);
      const se = () => spatialEmbed(lt, gt, w, { grid: c.grid, outSize: c.outSize });
      const ref = await run(se, false);
      const got = await run(se, true);
      expect(maxRelErr(got.data, ref.data, 'spatialEmbed')).toBeLessThanOrEqual(TOL);
      // Reshape is a view and 'unnamed scope' a custom-gradient scope: neither dispatches a shader.
      const dispatches = (names: string[]) => names.filter((k) => k !== 'Reshape' && k !== 'unnamed scope').length;
      console.log(`[${backend}] spatialEmbed ${JSON.stringify(c)}: ${ref.names.length} kernels, ${dispatches(ref.names)} dispatches (composition) → ${got.names.length} kernels, ${dispatches(got.names)} dispatches (DEM kernels)`);
      const hist = (names: string[]) => JSON.stringify(Object.fromEntries([...new Set(names)].map((k) => [k, names.filter((x) => x === k).length])));
      console.log(`[${backend}]   composition ${hist(ref.names)}\n[${backend}]   DEM kernels ${hist(got.names)}`);
      if (gpu) {
        expect(got.names.filter((k) => k === WINDOWED_ATTENTION_KERNEL)).toHaveLength(2);
        expect(got.names).toContain(BILINEAR_DOWN_KERNEL);
        expect(got.names.length).toBeLessThan(ref.names.length);
        // The only transposes left are recombine2D's (tiles → map), one per perspective.
        expect(got.names.filter((k) => k === 'Transpose')).toHaveLength(2);
      } else expect(got.names.length).toBe(ref.names.length);

      const shape: [number, number, number, number] = [c.B, c.grid[0] * c.h, c.grid[1] * c.w, c.d];
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
        expect(maxRelErr(g2.data, r2.data, `dualPerspectiveEnhance ${windows}`)).toBeLessThanOrEqual(TOL);
      }
      tf.dispose([lt, gt, L, G]);
      disposeAll(w);
    });
  }

  it('under tf.grad the composition runs (the kernels have no gradient)', async () => {
    const shape: [number, number, number, number] = [1, 6, 6, 8];
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
    expect(maxRelErr((await g!.data()) as Float32Array, (await r.data()) as Float32Array, 'grad')).toBeLessThanOrEqual(TOL);
    tf.dispose([q, kv, g!, r]);
    disposeAll(w);
  });
});
