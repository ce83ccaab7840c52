/**
 * `InfLlavaTranspose` for the `cpu` backend: {@link transposeRuns} on the backend's own arrays.
 * Registered on first use under our own kernel name, so no tfjs kernel is overridden and
 * importing the library registers nothing. tfjs's cpu Transpose computes every element's
 * coordinates (≈ 0.13 GB/s here); copying runs reaches the backend's copy bandwidth.
 */
import { engine, getKernel, registerKernel, util, type KernelConfig, type Tensor, type TensorInfo } from '@tensorflow/tfjs-core';
import { transposeRuns, type NumericArray } from './transposeRuns.js';

export const KERNEL = 'InfLlavaTranspose';

interface CpuBackendLike {
  readSync(dataId: object): NumericArray;
  makeTensorInfo(shape: number[], dtype: string, values: NumericArray): TensorInfo;
}

const config: KernelConfig = {
  kernelName: KERNEL,
  backendName: 'cpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const perm = attrs!.perm as number[];
    const cpu = backend as unknown as CpuBackendLike;
    const src = cpu.readSync(x.dataId);
    const out = util.getTypedArrayFromDType(x.dtype as 'float32' | 'int32', src.length) as NumericArray;
    transposeRuns(src, x.shape, perm, out);
    return cpu.makeTensorInfo(perm.map((p) => x.shape[p]!), x.dtype, out);
  },
};

let enabled = true;
/** Turns the faster path off (benchmarks compare it with tfjs's own kernel). */
export function setCpuTransposeKernel(on: boolean): void {
  enabled = on;
}

/** Transpose with the run-copying kernel on `cpu`; null where it does not apply. */
export function cpuTranspose(x: Tensor, perm: number[]): Tensor | null {
  if (!enabled || engine().backendName !== 'cpu' || (x.dtype !== 'float32' && x.dtype !== 'int32')) return null;
  if (!getKernel(KERNEL, 'cpu')) registerKernel(config);
  return engine().runKernel(KERNEL, { x }, { perm }) as Tensor;
}
