/**
 * The contract between our WGSL kernels and tfjs-backend-webgpu, in one place (as tfjs's own
 * webgpu_program.ts): the program object its `runWebGPUProgram` compiles and dispatches, the parts
 * of the backend and device we read, uniforms, and one way to register a kernel for 'webgpu' on
 * first use. Types are structural: nothing here imports tfjs-backend-webgpu (an optional peer).
 *
 * Whether kernels may use subgroup operations, and at which sizes, depends on how the device was
 * made (src/backends/webgpuDevice.ts); kernels get that from here too. The WGSL for subgroup
 * reductions is ./subgroups.ts.
 */
import { engine, getKernel, registerKernel, type NamedAttrMap, type NamedTensorMap, type Tensor, type TensorInfo } from '@tensorflow/tfjs-core';

export { webgpuSubgroupKernels, webgpuSubgroupSizes, type WebGPUSubgroupSizes } from '../../backends/webgpuDevice.js';

/** A program as tfjs-backend-webgpu 4.22 compiles it (`getUserCode()` is the module after tfjs's declarations). */
export interface WebGPUProgramLike {
  outputShape: number[];
  /** Pipeline cache key: everything that changes the WGSL. */
  shaderKey: string;
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  variableNames: string[];
  /** Components per input binding (4: `array<vec4<f32>>`); default 1. */
  variableComponents?: number[];
  /** Components of the output binding; default 1. */
  outputComponent?: number;
  /** Uniform struct fields after tfjs's own, e.g. `'rows : i32, eps : f32,'`. */
  uniforms?: string;
  /** tfjs adds `uniforms.size` (the output's element count) and bounds `main(index)` by it. */
  size?: boolean;
  getUserCode(): string;
}

/** Values of a program's `uniforms` fields, in order. */
export type ProgramUniform = Array<{ type: 'int32' | 'float32'; data: number[] }>;

/** The device limits our plans read. */
export interface WebGPULimits {
  maxComputeWorkgroupStorageSize: number;
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupsPerDimension: number;
  /** Absent in hand-written limits (tests): plans then assume WebGPU's default, 256. */
  maxComputeInvocationsPerWorkgroup?: number;
}

/** The subset of tfjs-backend-webgpu's `WebGPUBackend` that runs our programs. */
export interface WebGPUBackendLike {
  /** `output`: an existing tensor to write instead of a new one (tfjs 4.22; the in-place KV cache write). */
  runWebGPUProgram(program: WebGPUProgramLike, inputs: TensorInfo[], outputDtype: 'float32', uniforms?: ProgramUniform, output?: TensorInfo): TensorInfo;
  device: { limits: WebGPULimits };
}

/** Device limits of the active webgpu backend. */
export function webgpuLimits(): WebGPULimits {
  return (engine().backend as unknown as WebGPUBackendLike).device.limits;
}

export const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);

/** `workgroups` laid out as an X × Y grid within `maxDim` per dimension (Y may exceed it: callers check). */
export function grid2D(workgroups: number, maxDim: number): [number, number] {
  const gx = Math.min(workgroups, maxDim);
  return [gx, ceilDiv(workgroups, gx)];
}

/** A kernel's body: the inputs by name, the backend, and the attributes the caller passed. */
export type WebGPUKernelFunc<A> = (inputs: Record<string, TensorInfo>, backend: WebGPUBackendLike, attrs: A) => TensorInfo;

/**
 * Defines tfjs kernel `kernelName` for 'webgpu' and returns the function that runs it through
 * `engine().runKernel` (so tf.profile, tf.memory and tidy see it like any op). The kernel is
 * registered on the first run, not at import: the backend package is optional and may load later.
 */
export function defineWebGPUKernel<A extends object>(kernelName: string, kernelFunc: WebGPUKernelFunc<A>): (inputs: NamedTensorMap, attrs: A) => Tensor {
  return (inputs, attrs) => {
    if (!getKernel(kernelName, 'webgpu')) {
      registerKernel({
        kernelName,
        backendName: 'webgpu',
        kernelFunc: ({ inputs: ins, backend, attrs: a }) => kernelFunc(ins as Record<string, TensorInfo>, backend as unknown as WebGPUBackendLike, a as unknown as A),
      });
    }
    return engine().runKernel(kernelName, inputs, attrs as unknown as NamedAttrMap) as Tensor;
  };
}
