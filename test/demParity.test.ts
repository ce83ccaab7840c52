// Parity with PyTorch: golden fixtures from scripts/golden/ (the official SpatialEmbed
// semantics, checked against a transcription of the released forward), on every backend.
import '@tensorflow/tfjs'; // registers gradient kernels (same tfjs-core instance; a deep dist/ import would load a second one)
import * as tf from '@tensorflow/tfjs-core';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import {
  dualPerspectiveEnhance,
  linearConcatFuse,
  readSafetensors,
  recombine2D,
  spatialEmbed,
  spatialEmbedFromStateDict,
  spatialEmbedToStateDict,
  type Grid,
  type SpatialEmbedOptions,
} from '../src/index.js';
import { expectCloseScaled, maxRelErr } from './oracle.js';
import { describeEachBackend, type BackendName } from './backends.js';

const DIR = 'test/fixtures/dem';
const files = readdirSync(DIR).filter((f) => f.endsWith('.safetensors')).sort();
const worst = new Map<string, number>();

type Bound = { rtol: number; atol: number };
/**
 * Element by element: |a − ref| ≤ atol·max(max|ref|, floor) + rtol·|ref|; NaN fails. Measured
 * worst atol at rtol 1e-6, in units of max|ref|, over the four backends: 5.8e-7 (output, wasm),
 * 3.3e-7 (gradients, webgpu). The report keeps the max|err|/max|ref| of each backend.
 */
const TOL: Bound = { rtol: 1e-6, atol: 3e-6 };
const EXACT: Bound = { rtol: 0, atol: 0 };
async function expectParity(actual: tf.Tensor, ref: tf.Tensor, tol: Bound, what: string, backend: string, refFloor = 0): Promise<void> {
  expect(actual.shape, `${what}: shape`).toEqual(ref.shape);
  const [a, r] = [await actual.data(), await ref.data()];
  worst.set(backend, Math.max(worst.get(backend) ?? 0, maxRelErr(a, r, what, refFloor)));
  expectCloseScaled(a, r, tol.rtol, tol.atol, what, refFloor);
}

await describeEachBackend('DEM parity with PyTorch', (backend: BackendName) => {
  const tol = TOL;
  for (const file of files) {
    it(`${file}: every stage matches (element-wise, |err| <= ${tol.atol}·max|ref| + ${tol.rtol}·|ref|)`, async () => {
      const { tensors: t, metadata: m } = readSafetensors(new Uint8Array(readFileSync(`${DIR}/${file}`)));
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
      const before = tf.memory().numTensors;
      const L = recombine2D(lt, grid, 'local');
      const G = recombine2D(gt, grid, 'global');
      await expectParity(L, t['stage.L']!, EXACT, 'stage.L', backend);
      await expectParity(G, t['stage.G']!, EXACT, 'stage.G', backend);
      const e = dualPerspectiveEnhance(t['stage.L'] as tf.Tensor4D, t['stage.G'] as tf.Tensor4D, w.attention, opts);
      await expectParity(e.local, t['stage.enhanced_local']!, tol, 'stage.enhanced_local', backend);
      await expectParity(e.global, t['stage.enhanced_global']!, tol, 'stage.enhanced_global', backend);
      const fused = linearConcatFuse(t['stage.enhanced_local'] as tf.Tensor4D, t['stage.enhanced_global'] as tf.Tensor4D, w.fuse, opts);
      await expectParity(fused, t['stage.fused']!, tol, 'stage.fused', backend);
      const out = spatialEmbed(lt, gt, w, opts);
      await expectParity(out, t['output']!, tol, 'output', backend);
      tf.dispose([L, G, e.local, e.global, fused, out]);
      expect(tf.memory().numTensors, 'tensors leaked by the DEM ops').toBe(before);

      if (t['input.dout']) {
        // d sum(output * dout) / d(every weight and both inputs), as PyTorch's autograd gives.
        const names = Object.keys(spatialEmbedToStateDict(w));
        const dout = t['input.dout']!;
        const grads = tf.grads((...args: tf.Tensor[]) => {
          const dict = Object.fromEntries(names.map((n, i) => [n, args[i]!]));
          const y = spatialEmbed(args[names.length] as tf.Tensor4D, args[names.length + 1] as tf.Tensor4D, spatialEmbedFromStateDict(dict, { heads: Number(m.heads) }), opts);
          return tf.sum(tf.mul(y, dout));
        })([...names.map((n) => t[n]!), lt, gt]);
        // The key bias's gradient is analytically zero (softmax ignores a per-query shift), so
        // both sides hold rounding noise: errors there are measured against the largest gradient.
        const names2 = [...names, 'input.local_tiles', 'input.global_tiles'];
        let largest = 0;
        for (const n of names2) {
          const m = tf.tidy(() => tf.max(tf.abs(t[`grad.${n}`]!)));
          largest = Math.max(largest, (await m.data())[0]!);
          m.dispose();
        }
        for (const [i, n] of names2.entries()) {
          const floor = n.endsWith('attention.linears.1.bias') ? largest : 0;
          await expectParity(grads[i]!, t[`grad.${n}`]!, tol, `grad.${n}`, `${backend} (gradients)`, floor);
        }
        tf.dispose(grads);
      }
      tf.dispose(Object.values(t));
    });
  }
  // A report, not a test (it could not fail).
  afterAll(() => {
    for (const [b, e] of worst) if (b.startsWith(backend)) console.log(`worst max|err|/max|ref| on ${b}: ${e.toExponential(2)}`);
  });
});
