/**
 * Independent references: ndarray strided views (docs/spec.md's index algebra, written as views
 * rather than as our reshape/transpose), and exact comparisons that never pass NaN.
 */
import ndarray from 'ndarray';
import { appendFileSync } from 'node:fs';
import type { LinearActivation } from '../src/ops/linear.js';
import { expect } from 'vitest';

const RTOLS = [0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2];
/**
 * How the bounds are measured: with INF_LLAVA_TOL_LOG=file, every expectClose and maxRelErr
 * appends one JSON line to that file — the test, `what`, max|a − e|, max|e|, and for each rtol
 * in RTOLS the smallest atol that would pass (max(|a − e| − rtol·|e|)), and with a bound, the
 * share of it used (max |a − e| / (atol + rtol·|e|)). Off by default.
 */
export function logComparison(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, bound?: { rtol: number; atol: number }): void {
  const file = process.env.INF_LLAVA_TOL_LOG;
  if (!file) return;
  let maxAbs = 0;
  let maxRef = 0;
  let use = 0;
  const atol = RTOLS.map(() => 0);
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(expected[i]!);
    const err = Math.abs(actual[i]! - expected[i]!);
    if (bound) use = Math.max(use, err === 0 ? 0 : err / (bound.atol + bound.rtol * e));
    maxAbs = Math.max(maxAbs, err);
    maxRef = Math.max(maxRef, e);
    RTOLS.forEach((r, j) => (atol[j] = Math.max(atol[j]!, err - r * e)));
  }
  const { currentTestName: test, testPath } = expect.getState();
  const line = { file: testPath?.replace(/.*\/test\//, 'test/'), test, what, n: expected.length, maxAbs, maxRef, atol: Object.fromEntries(RTOLS.map((r, j) => [r, atol[j]])), ...(bound ? { bound, use } : {}) };
  appendFileSync(file, `${JSON.stringify(line)}\n`);
}

export type Shape4 = [number, number, number, number];

/** Deterministic pseudo-random floats in [-1, 1) (mulberry32), so failures reproduce. */
export function randomData(n: number, seed = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

/**
 * For each element of the crop output `[B*rows*cols, h, w, C]` (in order), the flat index of
 * the input element it copies, read off ndarray views of an index-valued array.
 */
export function cropIndexMap(shape: Shape4, [rows, cols]: [number, number], perspective: 'local' | 'global'): Int32Array {
  const [B, H, W, C] = shape;
  const h = Math.floor(H / rows);
  const w = Math.floor(W / cols);
  const ids = ndarray(Int32Array.from({ length: B * H * W * C }, (_, i) => i), shape);
  const out = new Int32Array(B * rows * cols * h * w * C);
  let o = 0;
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const view =
          perspective === 'local'
            ? ids.hi(b + 1, (r + 1) * h, (c + 1) * w, C).lo(b, r * h, c * w, 0) // x[b, r*h:(r+1)*h, c*w:(c+1)*w]
            : ids.lo(b, r, c, 0).step(1, rows, cols, 1); // x[b, r::rows, c::cols]
        for (let u = 0; u < h; u++) for (let v = 0; v < w; v++) for (let ch = 0; ch < C; ch++) out[o++] = view.get(0, u, v, ch);
      }
    }
  }
  return out;
}

export function gather(data: ArrayLike<number>, index: Int32Array): Float64Array {
  return Float64Array.from(index, (i) => data[i]!);
}

export function scatter(values: ArrayLike<number>, index: Int32Array, size: number): Float64Array {
  const out = new Float64Array(size);
  index.forEach((i, o) => (out[i] = out[i]! + values[o]!));
  return out;
}

/** Element-for-element equality (bit-exact for finite floats); NaN anywhere fails. */
export function expectExact(actual: ArrayLike<number>, expected: ArrayLike<number>, what = 'values'): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(a) || Number.isNaN(e) || a !== e) {
      throw new Error(`${what}: element ${i} is ${a}, expected ${e}`);
    }
  }
}

/** |a - e| <= atol + rtol*|e| for every element; NaN anywhere fails. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol = 1e-5, atol = 1e-6, what = 'values'): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  logComparison(actual, expected, what, { rtol, atol });
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      throw new Error(`${what}: element ${i} is ${a}, expected ${e} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

/** The largest |value| (0 for none). */
export function absMax(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]!));
  return m;
}

/**
 * expectClose with the atol given relative to the reference's scale: |a − e| ≤ atolScale·S +
 * rtol·|e| per element, S = max(max|e|, floor). Float32 rounding in a sum scales with the terms
 * summed, not with each result, so small elements get the scale's noise and no more; the bound
 * never exceeds (atolScale + rtol)·S, what the old max|err|/max|ref| ≤ atolScale + rtol allowed
 * everywhere.
 */
export function expectCloseScaled(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atolScale: number, what = 'values', floor = 0): void {
  expectClose(actual, expected, rtol, atolScale * Math.max(absMax(expected), floor), what);
}

/** max|actual − ref| / max(max|ref|, floor) — the parity metric of the golden tests; NaN or ±∞ anywhere throws. */
export function maxRelErr(actual: ArrayLike<number>, ref: ArrayLike<number>, what = 'values', floor = 0): number {
  expect(actual.length, `${what}: length`).toBe(ref.length);
  logComparison(actual, ref, what);
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(actual[i]! - ref[i]!);
    if (!(err <= Number.MAX_VALUE)) throw new Error(`${what}: element ${i} is ${actual[i]} (expected ${ref[i]})`);
    maxErr = Math.max(maxErr, err);
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
  }
  return maxErr / Math.max(maxRef, floor);
}

/** A linear epilogue's activation in float64 (the references of the matMul kernels' tests). */
function act(v: number, a: LinearActivation): number {
  switch (a) {
    case 'gelu':
      return 0.5 * v * (1 + erf64(v / Math.SQRT2));
    case 'quick-gelu':
      return v / (1 + Math.exp(-1.702 * v));
    case 'silu':
      return v / (1 + Math.exp(-v));
    default:
      return v;
  }
}

/** erf in float64: its Taylor series below 4.5 (cancellation costs < 1e-8), ±1 beyond (1 − erf(4.5) < 2e-10). */
function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 4.5) return Math.sign(x);
  let sum = 0;
  let term = ax;
  for (let n = 0; n < 200; n++) {
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    term *= (-ax * ax) / (n + 1);
  }
  return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
}

/** `act(x·wᵀ + b) ⊙ u + r` in float64: x `[M, K]`, w `[N, K]` (as PyTorch stores a linear weight). */
export function linearReference(x: Float32Array, w: ArrayLike<number>, b: Float32Array | null, u: Float32Array | null, r: Float32Array | null, M: number, K: number, N: number, a: LinearActivation): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      if (b) s += b[n]!;
      s = act(s, a);
      if (u) s *= u[m * N + n]!;
      if (r) s += r[m * N + n]!;
      out[m * N + n] = s;
    }
  return out;
}
