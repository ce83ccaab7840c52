// resizeBicubic against PyTorch's F.interpolate(mode='bicubic', align_corners=False), with and
// without antialias (fixtures: scripts/golden/generate_image_fixtures.py), on every backend.
// No '@tensorflow/tfjs' import: the gradient must work with tfjs-core alone.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensorsHeader, readSafetensors } from '../src/index.js';
import {
  cubicAntialiasTaps,
  cubicTaps,
  denseTaps,
  resizeBicubic,
  resizeBicubicWith,
  strideOf,
  transposeTaps,
  type Taps,
} from '../src/image/resizeBicubic.js';
import { describeEachBackend, expectTensorsCreated, expectThrowsClean, type BackendName } from './backends.js';
import { expectCloseScaled, expectExact, randomData } from './oracle.js';

const DIR = 'test/fixtures/image';
const resizeFiles = readdirSync(DIR).filter((f) => /^resize_.*\.safetensors$/.test(f) && f !== 'resize_weights.safetensors').sort();
const MODES = ['bicubic', 'antialias'] as const;
type Shape4 = [number, number, number, number];

/**
 * Element by element against PyTorch and the float64 oracle: |err| ≤ ATOL·max|ref| + RTOL·|ref|.
 * max|err| / max|ref| measured (this machine, torch 2.13 CPU fixtures): 1.2e-7 to 4.2e-7 on every
 * backend — a float32 ulp or two: the weights are PyTorch's bit for bit, and PyTorch accumulates
 * with fused multiply-adds. The atol needed at RTOL, in units of max|ref|: at most 1.1e-7.
 */
const RTOL = 1e-6;
const ATOL = 1e-6;
const TOL = `${ATOL}·max|ref| + ${RTOL}·|ref|`;
const worst = new Map<string, number>();

/** Asserts element-wise closeness (RTOL, ATOL) unless `check` is false; returns max|err|/max|ref| for the reports. */
function relErr(actual: ArrayLike<number>, ref: ArrayLike<number>, what: string, check = true): number {
  expect(actual.length, `${what}: length`).toBe(ref.length);
  if (check) expectCloseScaled(actual, ref, RTOL, ATOL, what);
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(actual[i]! - ref[i]!);
    if (!(e <= Number.MAX_VALUE)) throw new Error(`${what}: element ${i} is ${actual[i]}, expected ${ref[i]}`);
    maxErr = Math.max(maxErr, e);
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
  }
  return maxErr / Math.max(maxRef, 1e-30);
}

/** The metadata of a safetensors file, without making tensors (no backend needed). */
function readMetadata(path: string): Record<string, string> {
  const bytes = new Uint8Array(readFileSync(path));
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length).metadata;
}

function load(file: string) {
  return readSafetensors(new Uint8Array(readFileSync(`${DIR}/${file}`)));
}

/** Double-precision `[B, oh, ow, C]` reference from dense one-axis matrices. */
function denseResize(x: ArrayLike<number>, [B, H, W, C]: Shape4, mh: Float32Array, mw: Float32Array, oh: number, ow: number): Float64Array {
  const t = new Float64Array(B * H * ow * C);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let p = 0; p < ow; p++)
        for (let w = 0; w < W; w++) {
          const m = mw[p * W + w]!;
          if (m !== 0) for (let c = 0; c < C; c++) t[((b * H + h) * ow + p) * C + c]! += m * x[((b * H + h) * W + w) * C + c]!;
        }
  const y = new Float64Array(B * oh * ow * C);
  for (let b = 0; b < B; b++)
    for (let o = 0; o < oh; o++)
      for (let h = 0; h < H; h++) {
        const m = mh[o * H + h]!;
        if (m !== 0) for (let i = 0; i < ow * C; i++) y[(b * oh + o) * ow * C + i]! += m * t[(b * H + h) * ow * C + i]!;
      }
  return y;
}

describe('resizeBicubic weights (pure JS)', () => {
  const sizes = JSON.parse(readMetadata(`${DIR}/resize_weights.safetensors`).sizes!) as Array<[number, number]>;
  let t: Record<string, tf.Tensor> = {};
  beforeAll(async () => {
    await tf.setBackend('cpu');
    t = load('resize_weights.safetensors').tensors;
  });
  afterAll(() => tf.dispose(Object.values(t)));

  for (const [i, o] of sizes) {
    for (const mode of MODES) {
      it(`${i} → ${o} ${mode}: the [out, in] matrix is PyTorch's bit for bit`, async () => {
        const win = await t[`${i}_to_${o}.${mode}.weights`]!.data();
        const start = await t[`${i}_to_${o}.${mode}.start`]!.data();
        const width = win.length / o;
        const ref = new Float32Array(o * i);
        for (let r = 0; r < o; r++) for (let j = 0; j < width && start[r]! + j < i; j++) ref[r * i + start[r]! + j] = win[r * width + j]!;
        const taps = mode === 'antialias' ? cubicAntialiasTaps(i, o) : cubicTaps(i, o);
        expectExact(denseTaps(taps), ref, `${i} → ${o} ${mode} weights`);
      });
    }
  }

  it('transposeTaps is the matrix transpose', () => {
    for (const taps of [cubicTaps(13, 29), cubicAntialiasTaps(40, 12), cubicTaps(7, 7), cubicAntialiasTaps(1, 5)]) {
      const m = denseTaps(taps);
      const mt = denseTaps(transposeTaps(taps));
      const { inSize: n, outSize: o } = taps;
      const expected = Float32Array.from({ length: n * o }, (_, k) => m[(k % o) * n + Math.floor(k / o)]!);
      expectExact(mt, expected, 'transpose');
    }
  });

  it('strideOf finds exactly the one-pixel-per-output passes', () => {
    expect(strideOf(cubicTaps(1008, 336))).toEqual({ start: 1, step: 3 });
    expect(strideOf(cubicTaps(45, 9))).toEqual({ start: 2, step: 5 });
    expect(strideOf(cubicTaps(11, 11))).toEqual({ start: 0, step: 1 });
    expect(strideOf(cubicAntialiasTaps(11, 11))).toEqual({ start: 0, step: 1 });
    expect(strideOf(cubicTaps(32, 16))).toBeNull(); // even factor: half-pixel source
    expect(strideOf(cubicAntialiasTaps(1008, 336))).toBeNull(); // antialias averages
    expect(strideOf(cubicTaps(336, 1008))).toBeNull();
  });
});

await describeEachBackend('resizeBicubic vs PyTorch', (backend: BackendName) => {
  afterAll(() => console.log(`[${backend}] resizeBicubic worst max|err|/max|ref| vs PyTorch: ${(worst.get(backend) ?? 0).toExponential(2)}`));

  for (const file of resizeFiles) {
    it(`${file}: both modes match F.interpolate (element-wise, |err| <= ${TOL})`, async () => {
      const { tensors: t, metadata: m } = load(file);
      const shape = JSON.parse(m.input_shape!) as Shape4;
      const size = JSON.parse(m.size!) as [number, number];
      const data = randomData(shape.reduce((a, b) => a * b), Number(m.seed));
      if (t.input) expectExact(await t.input.data(), data, 'stored input vs randomData');
      const x = tf.tensor4d(data, shape);
      for (const mode of MODES) {
        const y = expectTensorsCreated(() => resizeBicubic(x, size, { antialias: mode === 'antialias' }));
        expect(y.shape).toEqual([shape[0], size[0], size[1], shape[3]]);
        expect(y.dtype).toBe('float32');
        let rel: number;
        if (m.store === 'full') {
          rel = relErr(await y.data(), await t[mode]!.data(), `${file} ${mode}`);
        } else {
          const origins = JSON.parse(m.patch_origins!) as Array<[number, number]>;
          rel = 0;
          const patches = tf.tidy(() => origins.map(([py, px]) => tf.slice(y, [0, py, px, 0], [1, 32, 32, shape[3]])));
          for (let p = 0; p < origins.length; p++) rel = Math.max(rel, relErr(await patches[p]!.data(), await t[`${mode}.patch${p}`]!.data(), `${file} ${mode} patch ${p}`));
          const mean = tf.tidy(() => tf.mean(y, [0, 1, 2]));
          const absmax = (await t[`${mode}.channel_absmax`]!.data())[0]!;
          const meanErr = relErr(await mean.data(), await t[`${mode}.channel_mean`]!.data(), `${file} ${mode} channel mean`, false); // bounded against the image's absmax below
          expect(meanErr * Math.max(...(await t[`${mode}.channel_mean`]!.data()).map(Math.abs)) / absmax).toBeLessThan(1e-5);
          tf.dispose([...patches, mean]);
        }
        worst.set(backend, Math.max(worst.get(backend) ?? 0, rel));
        y.dispose();
      }
      x.dispose();
      tf.dispose(Object.values(t));
    });
  }

  const small: Array<[Shape4, [number, number]]> = [
    [[2, 13, 17, 3], [29, 8]],
    [[1, 40, 30, 4], [12, 20]],
    [[1, 9, 6, 2], [1, 1]],
    [[1, 1, 1, 3], [5, 4]],
    [[1, 24, 24, 16], [72, 72]],
  ];
  for (const [shape, size] of small) {
    for (const mode of MODES) {
      const opts = { antialias: mode === 'antialias' };
      it(`${JSON.stringify(shape)} → ${JSON.stringify(size)} ${mode}: gather and matMul agree with a float64 dense oracle`, async () => {
        const data = randomData(shape.reduce((a, b) => a * b), 5);
        const x = tf.tensor4d(data, shape);
        const make = opts.antialias ? cubicAntialiasTaps : cubicTaps;
        const ref = denseResize(data, shape, denseTaps(make(shape[1], size[0])), denseTaps(make(shape[2], size[1])), size[0], size[1]);
        for (const method of ['gather', 'matmul'] as const) {
          const y = resizeBicubicWith(x, size, opts, { method });
          relErr(await y.data(), ref, `${method}`);
          y.dispose();
        }
        x.dispose();
      });
    }
  }

  const exactCases: Array<[Shape4, [number, number], boolean, string]> = [
    [[1, 1008, 1008, 3], [336, 336], false, 'the official 1008 → 336 (source 3i+1)'],
    [[2, 45, 35, 2], [9, 7], false, 'factor 5 (source 5i+2)'],
    [[1, 12, 30, 3], [4, 30], false, 'factor 3 on one axis, same width'],
    [[1, 11, 7, 3], [11, 7], false, 'same size'],
    [[1, 11, 7, 3], [11, 7], true, 'same size, antialias'],
  ];
  for (const [shape, size, antialias, label] of exactCases) {
    it(`${label}: the strided-slice fast path is bit-identical to the general path and to x[:, s::k, t::l]`, async () => {
      const data = randomData(shape.reduce((a, b) => a * b), 9);
      const x = tf.tensor4d(data, shape);
      const fast = expectTensorsCreated(() => resizeBicubic(x, size, { antialias }));
      const fastData = await fast.data();
      for (const method of ['gather', 'matmul'] as const) {
        if (method === 'matmul' && shape[1] > 100) continue; // a 1008-wide dense pass is slow on cpu; gather covers it
        const general = resizeBicubicWith(x, size, { antialias }, { method, useStride: false });
        expectExact(fastData, await general.data(), `fast path vs ${method}`);
        general.dispose();
      }
      const make = antialias ? cubicAntialiasTaps : cubicTaps;
      const sh = strideOf(make(shape[1], size[0]))!;
      const sw = strideOf(make(shape[2], size[1]))!;
      const [B, H, W, C] = shape;
      const expected = new Float32Array(B * size[0] * size[1] * C);
      let o = 0;
      for (let b = 0; b < B; b++)
        for (let i = 0; i < size[0]; i++)
          for (let j = 0; j < size[1]; j++)
            for (let c = 0; c < C; c++) expected[o++] = data[((b * H + sh.start + sh.step * i) * W + sw.start + sw.step * j) * C + c]!;
      expectExact(fastData, expected, 'fast path vs strided oracle');
      tf.dispose([x, fast]);
    });
  }

  const gradCases: Array<[Shape4, [number, number]]> = [
    [[2, 7, 9, 3], [12, 5]],
    [[1, 12, 12, 2], [4, 4]],
    [[1, 6, 5, 1], [6, 5]],
  ];
  for (const [shape, size] of gradCases) {
    for (const mode of MODES) {
      const opts = { antialias: mode === 'antialias' };
      it(`${JSON.stringify(shape)} → ${JSON.stringify(size)} ${mode}: tf.grad is the transposed resize (adjoint identity, dense oracle, finite differences)`, async () => {
        const [B, H, W, C] = shape;
        const xData = randomData(B * H * W * C, 21);
        const wData = randomData(B * size[0] * size[1] * C, 22);
        const x = tf.tensor4d(xData, shape);
        const wt = tf.tensor4d(wData, [B, size[0], size[1], C]);
        const f = (v: tf.Tensor) => tf.sum(tf.mul(resizeBicubic(v as tf.Tensor4D, size, opts), wt));
        const dx = tf.grad(f)(x);
        const y = resizeBicubic(x, size, opts);
        const dxData = await dx.data();
        const yData = await y.data();
        // <A x, w> = <x, Aᵀ w>
        let lhs = 0;
        let rhs = 0;
        let scale = 0;
        for (let i = 0; i < yData.length; i++) (lhs += yData[i]! * wData[i]!), (scale += Math.abs(yData[i]! * wData[i]!));
        for (let i = 0; i < xData.length; i++) rhs += xData[i]! * dxData[i]!;
        expect(Math.abs(lhs - rhs) / scale, `<Ax,w> = ${lhs}, <x,Aᵀw> = ${rhs}`).toBeLessThan(1e-5);
        // Aᵀ w from the dense matrices, in float64.
        const make = opts.antialias ? cubicAntialiasTaps : cubicTaps;
        const th: Taps = make(H, size[0]);
        const tw: Taps = make(W, size[1]);
        const ref = denseResize(wData, [B, size[0], size[1], C], denseTaps(transposeTaps(th)), denseTaps(transposeTaps(tw)), H, W);
        relErr(dxData, ref, 'dx vs dense adjoint');
        // Central finite differences on a few coordinates (float64 arithmetic on the linear map).
        for (const k of [0, Math.floor(xData.length / 2), xData.length - 1]) {
          const eps = 0.5;
          const plus = Float32Array.from(xData);
          const minus = Float32Array.from(xData);
          plus[k]! += eps;
          minus[k]! -= eps;
          const fp = tf.tidy(() => f(tf.tensor4d(plus, shape)));
          const fm = tf.tidy(() => f(tf.tensor4d(minus, shape)));
          const fd = ((await fp.data())[0]! - (await fm.data())[0]!) / (2 * eps);
          expect(Math.abs(fd - dxData[k]!), `finite difference at ${k}: ${fd} vs ${dxData[k]}`).toBeLessThan(1e-4 * Math.max(1, Math.abs(dxData[k]!)));
          tf.dispose([fp, fm]);
        }
        tf.dispose([x, wt, dx, y]);
      });
    }
  }

  it('the official 1008 → 336 view: the gradient scatters dy onto pixels 3i+1 exactly', async () => {
    const x = tf.zeros([1, 30, 30, 2]) as tf.Tensor4D;
    const wData = randomData(10 * 10 * 2, 3);
    const wt = tf.tensor4d(wData, [1, 10, 10, 2]);
    const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(resizeBicubic(v as tf.Tensor4D, [10, 10]), wt)))(x);
    const d = await dx.data();
    const expected = new Float32Array(30 * 30 * 2);
    for (let i = 0; i < 10; i++) for (let j = 0; j < 10; j++) for (let c = 0; c < 2; c++) expected[((3 * i + 1) * 30 + 3 * j + 1) * 2 + c] = wData[(i * 10 + j) * 2 + c]!;
    expectExact(d, expected, 'd resize / dx');
    tf.dispose([x, wt, dx]);
  });

  it('rejects bad arguments with errors naming them, leaving no tensor behind', () => {
    const x = tf.zeros([1, 4, 4, 3]) as tf.Tensor4D;
    const rank3 = tf.zeros([4, 4, 3]);
    const int = tf.zeros([1, 4, 4, 3], 'int32') as tf.Tensor4D;
    const empty = tf.zeros([1, 0, 4, 3]) as tf.Tensor4D;
    expectThrowsClean(() => resizeBicubic(rank3 as unknown as tf.Tensor4D, [2, 2]), /resizeBicubic: x must be rank 4/);
    expectThrowsClean(() => resizeBicubic(int, [2, 2]), /resizeBicubic: x must be float32, got int32/);
    expectThrowsClean(() => resizeBicubic(empty, [2, 2]), /resizeBicubic: x must have a non-zero height and width/);
    expectThrowsClean(() => resizeBicubic(null as unknown as tf.Tensor4D, [2, 2]), /resizeBicubic: x must be a tf.Tensor4D/);
    for (const size of [[0, 2], [2.5, 2], [2], [2, 2, 2], [-1, 3], 'big', [NaN, 1], [2 ** 60, 1]]) {
      expectThrowsClean(() => resizeBicubic(x, size as unknown as [number, number]), /resizeBicubic: size must be \[height, width\], two positive integers/);
    }
    expectThrowsClean(() => resizeBicubic(x, [2, 2], { antialias: 'yes' as unknown as boolean }), /resizeBicubic: opts.antialias must be a boolean/);
    tf.dispose([x, rank3, int, empty]);
  });
});
