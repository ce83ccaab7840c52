import { cast, getBackend, mul, reshape, scalar, transpose, type Tensor } from '@tensorflow/tfjs-core';
import { blockSwaps } from '../kernels/blockSwaps.js';
import { cpuTranspose } from '../kernels/cpuRearrange.js';

/**
 * Drops size-1 axes and merges axes that stay adjacent and in order under `perm`, so a
 * rank-6 view often runs as a rank-3 or rank-4 transpose (fewer index computations per
 * element on every backend, and within every backend's rank limit).
 */
export function simplifyPermutation(shape: readonly number[], perm: readonly number[]): { shape: number[]; perm: number[] } {
  const kept = shape.map((s, i) => (s > 1 ? i : -1)).filter((i) => i >= 0);
  const renumber = new Map(kept.map((axis, i) => [axis, i]));
  const keptShape = kept.map((axis) => shape[axis]!);
  const keptPerm = perm.filter((axis) => renumber.has(axis)).map((axis) => renumber.get(axis)!);

  // Runs of output axes whose input axes are consecutive: [first input axis, run length].
  const runs: Array<[number, number]> = [];
  for (const axis of keptPerm) {
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === axis) last[1]++;
    else runs.push([axis, 1]);
  }
  const byInput = [...runs].sort((a, b) => a[0] - b[0]);
  const newShape = byInput.map(([start, len]) => keptShape.slice(start, start + len).reduce((a, b) => a * b, 1));
  const newPerm = runs.map((run) => byInput.indexOf(run));
  return { shape: newShape, perm: newPerm };
}

/**
 * `reshape(transpose(reshape(x, shape), perm), outShape)`, the one native rearrangement
 * every DCM op is, with the view simplified first.
 */
export function rearrange(x: Tensor, shape: readonly number[], perm: readonly number[], outShape: readonly number[]): Tensor {
  const s = simplifyPermutation(shape, perm);
  if (s.perm.every((axis, i) => axis === i)) return reshape(x, [...outShape]);
  const view = reshape(x, s.shape);
  const moved =
    cpuTranspose(view, s.perm) ??
    wasmTranspose(view, s.perm) ??
    (needsInt32Workaround(view) ? transposeInt32ViaFloat(view, s.perm) : transpose(view, s.perm));
  return reshape(moved, [...outShape]);
}

/** wasm: rank > 4 as adjacent block swaps of rank 4 (see kernels/blockSwaps.ts); null otherwise. */
function wasmTranspose(x: Tensor, perm: number[]): Tensor | null {
  if (x.rank <= 4 || getBackend() !== 'wasm') return null;
  let t = x;
  for (const { view } of blockSwaps(x.shape, perm)) t = transpose(reshape(t, view), [0, 2, 1, 3]);
  return reshape(t, perm.map((p) => x.shape[p]!));
}

/**
 * tfjs-backend-webgpu 4.22 compiles int32 transposes of rank > 2 into an invalid shader (its
 * output expects f32): the result silently reads as zeros. Found by this project's int32
 * oracle tests. That backend computes int32 through f32 anyway (its slice and gather round
 * values past 2^24), so we go through float32 explicitly; exact for |v| <= 2^24.
 */
function needsInt32Workaround(x: Tensor): boolean {
  return x.dtype === 'int32' && x.rank > 2 && getBackend() === 'webgpu';
}

function transposeInt32ViaFloat(x: Tensor, perm: number[]): Tensor {
  // cast(int32 -> float32) only relabels on webgpu; an arithmetic op really converts.
  const asFloat = mul(x, scalar(1, 'float32'));
  return cast(transpose(asFloat, perm), 'int32');
}
