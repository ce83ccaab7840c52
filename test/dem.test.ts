import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import {
  dualPerspectiveEnhance,
  initSpatialEmbed,
  linearConcatFuse,
  recombine2D,
  spatialEmbed,
  spatialEmbedToStateDict,
  type DemAttentionWeights,
  type SpatialEmbedWeights,
} from '../src/index.js';
import { describeEachBackend, expectTensorsCreated, expectThrowsClean } from './backends.js';
import { naiveEnhance } from './demReference.js';
import { expectClose, randomData } from './oracle.js';

interface Config {
  B: number;
  grid: [number, number];
  h: number;
  w: number;
  d: number;
  heads: number;
}
const configs: Config[] = [
  { B: 1, grid: [3, 3], h: 3, w: 3, d: 16, heads: 4 },
  { B: 2, grid: [2, 3], h: 2, w: 3, d: 8, heads: 2 },
  { B: 1, grid: [1, 2], h: 4, w: 2, d: 12, heads: 3 },
];

type Plain = Record<string, { shape: number[]; data: Float32Array }>;

/** Random official-variant weights as plain arrays (recreated on each backend). */
function plainWeights(d: number, heads: number, seed: number): Plain {
  const tensors = tf.tidy(() => spatialEmbedToStateDict(initSpatialEmbed(d, { heads, hidden: 4, seed })));
  const out: Plain = {};
  for (const [k, t] of Object.entries(tensors)) {
    const data = t.dataSync() as Float32Array;
    // Perturb the LayerNorms so they are not the identity.
    out[k] = { shape: t.shape, data: k.includes('.ln') ? Float32Array.from(data, (v, i) => v + 0.1 * Math.sin(i + seed)) : Float32Array.from(data) };
    t.dispose();
  }
  return out;
}

function attentionFrom(p: Plain, heads: number): DemAttentionWeights {
  const T = (k: string) => tf.tensor(p[`model.spatial_embed.${k}`]!.data, p[`model.spatial_embed.${k}`]!.shape);
  const L = (i: number) => ({ weight: T(`attention.linears.${i}.weight`) as tf.Tensor2D, bias: T(`attention.linears.${i}.bias`) as tf.Tensor1D });
  return { query: L(0), key: L(1), value: L(2), output: L(3), norm: { weight: T('attention.ln.weight') as tf.Tensor1D, bias: T('attention.ln.bias') as tf.Tensor1D }, heads };
}

function disposeWeights(w: DemAttentionWeights | SpatialEmbedWeights): void {
  tf.dispose(Object.values(spatialEmbedToStateDictLoose(w)));
}
function spatialEmbedToStateDictLoose(w: DemAttentionWeights | SpatialEmbedWeights): Record<string, tf.Tensor> {
  if ('attention' in w) return spatialEmbedToStateDict(w);
  const list = [w.query, w.key, w.value, w.output].flatMap((l) => [l.weight, l.bias!]).concat([w.norm.weight, w.norm.bias]);
  return Object.fromEntries(list.map((t, i) => [String(i), t]));
}

/** Runs `f` on the cpu backend and returns its result's values (the naive reference needs dataSync). */
async function onCpu(f: () => tf.Tensor): Promise<Float32Array> {
  const prev = tf.getBackend();
  await tf.setBackend('cpu');
  const t = f();
  const data = (await t.data()) as Float32Array;
  t.dispose();
  await tf.setBackend(prev);
  return data;
}

await describeEachBackend('DEM', () => {
  for (const cfg of configs) {
    const { B, grid, h, w, d, heads } = cfg;
    const shape: [number, number, number, number] = [B, grid[0] * h, grid[1] * w, d];
    const size = shape.reduce((a, b) => a * b);
    for (const [windows, layout] of [['official', 'batched'], ['official', 'per-window'], ['official', 'per-head'], ['paper', 'batched'], ['paper', 'per-window'], ['paper', 'per-head']] as const) {
      it(`dualPerspectiveEnhance ${JSON.stringify(cfg)} windows ${windows}, layout ${layout} equals the naive per-window, per-head reference`, async () => {
        const p = plainWeights(d, heads, d + B);
        const lData = randomData(size, 1);
        const gData = randomData(size, 2);
        const naive = (qIsGlobal: boolean) =>
          onCpu(() => {
            const wts = attentionFrom(p, heads);
            const L = tf.tensor4d(lData, shape);
            const G = tf.tensor4d(gData, shape);
            // Official: global queries contiguous ('local') windows, local queries strided ones.
            const kind = (qIsGlobal ? windows === 'official' : windows === 'paper') ? 'local' : 'global';
            const out = qIsGlobal ? naiveEnhance(G, L, wts, grid[0], grid[1], kind) : naiveEnhance(L, G, wts, grid[0], grid[1], kind);
            disposeWeights(wts);
            tf.dispose([L, G]);
            return out;
          });
        const expectGlobal = await naive(true);
        const expectLocal = await naive(false);

        const wts = attentionFrom(p, heads);
        const L = tf.tensor4d(lData, shape);
        const G = tf.tensor4d(gData, shape);
        const out = expectTensorsCreated(() => dualPerspectiveEnhance(L, G, wts, { grid, windows, layout }), 2);
        expect(out.local.shape).toEqual(shape);
        expectClose(await out.global.data(), expectGlobal, 1e-4, 1e-5, 'enhanced global');
        expectClose(await out.local.data(), expectLocal, 1e-4, 1e-5, 'enhanced local');

        const onlyGlobal = dualPerspectiveEnhance(L, G, wts, { grid, windows, layout, mode: 'global' });
        expectClose(await onlyGlobal.global.data(), expectGlobal, 1e-4, 1e-5, "mode 'global': global");
        expectClose(await onlyGlobal.local.data(), lData, 0, 0, "mode 'global': local passes through");
        const onlyLocal = dualPerspectiveEnhance(L, G, wts, { grid, windows, layout, mode: 'local' });
        expectClose(await onlyLocal.local.data(), expectLocal, 1e-4, 1e-5, "mode 'local': local");
        expectClose(await onlyLocal.global.data(), gData, 0, 0, "mode 'local': global passes through");
        tf.dispose([L, G, out.local, out.global, onlyGlobal.local, onlyGlobal.global, onlyLocal.local, onlyLocal.global]);
        disposeWeights(wts);
      });
    }
  }

  it('spatialEmbed composes recombine → enhance → fuse → reduce', async () => {
    const wts = initSpatialEmbed(16, { heads: 4, hidden: 4, seed: 3 });
    const lt = tf.tensor4d(randomData(9 * 4 * 4 * 16, 5), [9, 4, 4, 16]);
    const gt = tf.tensor4d(randomData(9 * 4 * 4 * 16, 6), [9, 4, 4, 16]);
    const y = expectTensorsCreated(() => spatialEmbed(lt, gt, wts, { grid: 3 }));
    expect(y.shape).toEqual([1, 4, 4, 16]);
    const manual = tf.tidy(() => {
      const e = dualPerspectiveEnhance(recombine2D(lt, 3, 'local'), recombine2D(gt, 3, 'global'), wts.attention, { grid: 3 });
      return tf.image.resizeBilinear(linearConcatFuse(e.local, e.global, wts.fuse), [4, 4], false, true);
    });
    expectClose(await y.data(), await manual.data(), 0, 0, 'spatialEmbed vs composition');
    const avg = spatialEmbed(lt, gt, wts, { grid: 3, reduce: 'avg', outSize: [6, 4] });
    expect(avg.shape).toEqual([1, 6, 4, 16]);
    tf.dispose([lt, gt, y, manual, avg]);
    disposeWeights(wts);
  });

  it('the DEM ops reject bad input with a message that names the problem', () => {
    const wts = initSpatialEmbed(8, { heads: 2, hidden: 2, seed: 1 });
    const L = tf.zeros([1, 6, 6, 8]) as tf.Tensor4D;
    const G = tf.zeros([1, 6, 6, 8]) as tf.Tensor4D;
    const odd = tf.zeros([1, 6, 4, 8]) as tf.Tensor4D;
    const ints = tf.zeros([1, 6, 6, 8], 'int32') as tf.Tensor4D;
    const e = (o: object) => dualPerspectiveEnhance(L, G, wts.attention, o as { grid: number });
    expectThrowsClean(() => dualPerspectiveEnhance(L, odd, wts.attention, { grid: 3 }), /dualPerspectiveEnhance: local \[1,6,6,8\] and global \[1,6,4,8\] must have the same shape/);
    expectThrowsClean(() => dualPerspectiveEnhance(ints, G, wts.attention, { grid: 3 }), /dualPerspectiveEnhance: local must be float32, got int32/);
    expectThrowsClean(() => e({}), /dualPerspectiveEnhance: opts.grid is required/);
    expectThrowsClean(() => e({ grid: 4 }), /dualPerspectiveEnhance: grid \[4, 4\] does not divide the feature map of shape \[1,6,6,8\]/);
    expectThrowsClean(() => e({ grid: 3, mode: 'neither' }), /dualPerspectiveEnhance: opts.mode must be one of 'both', 'global', 'local', got "neither"/);
    expectThrowsClean(() => e({ grid: 3, windows: 'random' }), /dualPerspectiveEnhance: opts.windows must be one of 'official', 'paper'/);
    expectThrowsClean(() => e({ grid: 3, layout: 'fast' }), /dualPerspectiveEnhance: opts.layout must be one of 'auto', 'batched', 'per-window', 'per-head'/);
    expectThrowsClean(() => dualPerspectiveEnhance(L, G, { ...wts.attention, heads: 3 }, { grid: 3 }), /dualPerspectiveEnhance: heads must be a positive integer dividing the channel count 8, got 3/);
    expectThrowsClean(
      () => dualPerspectiveEnhance(L, G, { ...wts.attention, key: { weight: wts.fuse.local[0]!.weight } }, { grid: 3 }),
      /dualPerspectiveEnhance: weight attention.key.weight must have shape \[8,8\], got \[2,8\]/,
    );
    expectThrowsClean(() => linearConcatFuse(L, G, { ...wts.fuse, local: [] }), /linearConcatFuse: fuse.local must be a non-empty array of Linear layers/);
    expectThrowsClean(
      () => linearConcatFuse(L, G, { ...wts.fuse, local: [wts.fuse.local[0]!] }),
      /linearConcatFuse: with fuse.norm the branch outputs must add up to the channel count 8 \(residual\), got 6/,
    );
    expectThrowsClean(() => linearConcatFuse(L, G, wts.fuse, { order: 'middle' as 'local-first' }), /linearConcatFuse: opts.order must be one of/);
    const tiles = tf.zeros([8, 2, 2, 8]) as tf.Tensor4D;
    expectThrowsClean(() => spatialEmbed(tiles, tiles, wts, { grid: 3 }), /spatialEmbed: tile count 8 .* is not a multiple of rows\*cols = 9/);
    expectThrowsClean(() => spatialEmbed(tiles, tiles, wts, { grid: 2, outSize: [0, 2] }), /spatialEmbed: opts.outSize must be \[height, width\] of positive integers/);
    expectThrowsClean(() => spatialEmbed(tiles, tiles, wts, { grid: 2, reduce: 'avg', outSize: [3, 3] }), /spatialEmbed: reduce 'avg' needs outSize \[3,3\] to divide the fused map 4×4/);
    tf.dispose([L, G, odd, ints, tiles]);
    disposeWeights(wts);
  });
});

