/**
 * Writes new keys or values into a preallocated KV cache on the webgpu backend, IN PLACE:
 *
 *   cache[b, h, P + t, d] = rope?(update)[b, h, t, d]      cache [B, kvH, Smax, hd], update [B, kvH, T, hd] (or [B, T, kvH, hd])
 *
 * One thread per element of the update. The cache tensor is the program's OUTPUT binding:
 * tfjs-backend-webgpu's `runWebGPUProgram(program, inputs, dtype, uniforms, output)` takes an
 * existing TensorInfo as the output (4.22: `if (!output) output = makeTensorInfo(...)`; it then
 * uploads that tensor if it still lives on the CPU and binds its GPUBuffer read_write), so the
 * positions outside `[P, P + T)` are never touched and nothing is allocated. What that takes:
 * - the cache is not bound as an input too (one buffer may not be both writable and read-only in a
 *   dispatch), so the rotation reads only the update;
 * - the backend may hold a CPU copy of the cache from an earlier read (`tensorData.values`, kept by
 *   `read`/`readSync` next to the GPU buffer and returned by later reads): it is dropped after the
 *   write, so that reads see the new contents;
 * - the kernel returns the cache's dataId with its refCount raised (as tfjs's own Identity does),
 *   so the engine's output tensor is an alias the op disposes at once: the cache tensor stays the
 *   one owner, tfjs neither frees nor reuses its buffer, and `tf.memory()` does not change.
 * Every tensor that shares the cache's dataId (a `reshape` or `clone` of it) sees the write (the op
 * writes in place by default only when none exists).
 *
 * With `rope` (the k write of a LLaMA layer) the rotary embedding is applied on the way:
 * `x·cos + rotate_half(x)·sinSigned`, tables `[T, hd]` for positions P … P + T − 1, where
 * `rotate_half(x)[d] = x[(d + hd/2) mod hd]` and sinSigned = cat(−sin, sin) (src/models/llama/rope.ts's tables).
 *
 * Registered as {@link KV_CACHE_WRITE_KERNEL} for 'webgpu' on first use; `src/ops/kvCache.ts` is
 * the op (validation, the composition).
 */
import type { Tensor, TensorInfo } from '@tensorflow/tfjs-core';
import { defineWebGPUKernel, type ProgramUniform, type WebGPUBackendLike, type WebGPUProgramLike } from './program.js';

export const KV_CACHE_WRITE_KERNEL = 'InfLlavaKvCacheWrite';

const THREADS = 256;

/** `'BHTD'`: update `[B, kvH, T, hd]` (the cache's order); `'BTHD'`: `[B, T, kvH, hd]` (a projection's output, heads not yet split out). */
export type KvUpdateLayout = 'BHTD' | 'BTHD';

export function kvCacheWriteWGSL(rope: boolean, layout: KvUpdateLayout): string {
  // index runs over [B, kvH, T, hd] (the cache's order); row is the start of its head vector in the update.
  const srcRow = layout === 'BHTD' ? '(g * uniforms.T + t) * uniforms.hd' : '((b * uniforms.T + t) * uniforms.H + h) * uniforms.hd';
  return /* wgsl */ `
// ---- KV cache write in place${rope ? ', rotary embedding on the way' : ''}, update ${layout === 'BHTD' ? '[B, kvH, T, hd]' : '[B, T, kvH, hd]'}
${'fn main(index : i32)'} {
  if (index >= uniforms.size) { return; }
  let hd = uniforms.hd;
  let d = index % hd;
  let rest = index / hd;
  let t = rest % uniforms.T;
  let g = rest / uniforms.T;          // b · kvH + h
  let h = g % uniforms.H;
  let b = g / uniforms.H;
  let row = ${srcRow};
  ${rope
    ? `let half = hd / 2;
  let partner = select(d - half, d + half, d < half);
  let v = newIn[row + d] * cosIn[t * hd + d] + newIn[row + partner] * sinIn[t * hd + d];`
    : 'let v = newIn[row + d];'}
  result[(g * uniforms.smax + uniforms.pos + t) * hd + d] = v;
}
`;
}

class KvCacheWriteProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0, 1, 2, 3] }; // flat: main(index) over the update's elements
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  variableNames: string[];
  uniforms = 'H : i32, T : i32, hd : i32, smax : i32, pos : i32,';
  size = true;

  constructor(
    private readonly rope: boolean,
    private readonly layout: KvUpdateLayout,
    workShape: number[],
  ) {
    this.outputShape = workShape; // sets `size` (the update's element count); the bound output is the cache
    this.dispatch = [Math.ceil(workShape.reduce((a, b) => a * b, 1) / THREADS), 1, 1];
    this.variableNames = rope ? ['newIn', 'cosIn', 'sinIn'] : ['newIn'];
    this.shaderKey = `infLlavaKvCacheWrite_${rope ? 'rope' : 'plain'}_${layout}`;
  }

  getUserCode(): string {
    return kvCacheWriteWGSL(this.rope, this.layout);
  }
}

/** The backend internals the in-place write touches (tfjs-backend-webgpu 4.22). */
interface InPlaceBackend extends WebGPUBackendLike {
  incRef(dataId: object): void;
  tensorMap: { get(dataId: object): { values: unknown } | undefined };
}

interface Attrs {
  position: number;
  layout: KvUpdateLayout;
}

const runKernel = defineWebGPUKernel<Attrs>(KV_CACHE_WRITE_KERNEL, (inputs, backend, { position, layout }) => {
  const { cache, newIn, cosIn, sinIn } = inputs;
  const be = backend as InPlaceBackend;
  const [B, H, smax, hd] = cache!.shape as [number, number, number, number];
  const T = newIn!.shape[layout === 'BHTD' ? 2 : 1]!;
  const program = new KvCacheWriteProgram(!!cosIn, layout, [B, H, T, hd]);
  const uniforms: ProgramUniform = [
    { type: 'int32', data: [H] },
    { type: 'int32', data: [T] },
    { type: 'int32', data: [hd] },
    { type: 'int32', data: [smax] },
    { type: 'int32', data: [position] },
  ];
  const out: TensorInfo = { dataId: cache!.dataId, shape: cache!.shape, dtype: 'float32' };
  be.runWebGPUProgram(program, cosIn ? [newIn!, cosIn, sinIn!] : [newIn!], 'float32', uniforms, out);
  const data = be.tensorMap.get(cache!.dataId);
  if (data) data.values = null; // a CPU copy from an earlier read is stale now
  be.incRef(cache!.dataId); // the engine's output tensor is an alias of the cache
  return out;
});

/**
 * Writes `update` into `cache` at position `position` in place (see the header); optional rotary
 * tables `[T, hd]`. Inputs are assumed validated (src/ops/kvCache.ts). Returns nothing: `cache` holds the result.
 */
export function kvCacheWriteInPlace(cache: Tensor, update: Tensor, position: number, layout: KvUpdateLayout, rope?: { cos: Tensor; sinSigned: Tensor }): void {
  const inputs: Record<string, Tensor> = { cache, newIn: update };
  if (rope) {
    inputs.cosIn = rope.cos;
    inputs.sinIn = rope.sinSigned;
  }
  const alias = runKernel(inputs, { position, layout });
  alias.dispose();
}
