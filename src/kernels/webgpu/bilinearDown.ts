/**
 * Bilinear resize with half-pixel centres (PyTorch `align_corners=False`, no antialiasing) as
 * one tfjs-backend-webgpu kernel, fp32: `x [B, H, W, C] → [B, oh, ow, C]`, source coordinate
 * `max((o + 0.5)·in/out − 0.5, 0)`, neighbours clamped at the edge (the weights of
 * src/ops/resizeBilinear.ts's `bilinearWeights`). The DEM's 72→24 (factor 3) samples pixel
 * 3i+1 exactly; the kernel is the general bilinear. One thread per output element.
 *
 * Registered lazily as {@link BILINEAR_DOWN_KERNEL} for 'webgpu'; no gradient (the caller runs
 * the differentiable op while a gradient tape records).
 */
import type { Tensor4D } from '@tensorflow/tfjs-core';
import { ceilDiv, defineWebGPUKernel, grid2D, webgpuLimits, type ProgramUniform, type WebGPUProgramLike } from './program.js';

export const BILINEAR_DOWN_KERNEL = 'InfLlavaBilinearResize';
const THREADS = 64;

export function bilinearDownWGSL(): string {
  return /* wgsl */ `
// ---- bilinear resize, half-pixel centres (align_corners = False)
fn srcAxis(o : i32, inSize : i32, outSize : i32) -> vec3<f32> {
  // (i0, i1, frac) as floats
  let src = max((f32(o) + 0.5) * (f32(inSize) / f32(outSize)) - 0.5, 0.0);
  let i0 = min(i32(floor(src)), inSize - 1);
  let i1 = min(i0 + 1, inSize - 1);
  return vec3<f32>(f32(i0), f32(i1), src - f32(i0));
}

${'fn main()'} {
  let idx = i32((workgroupId.y * numWorkgroups.x + workgroupId.x) * ${THREADS}u + localIndex);
  let C = uniforms.channels;
  let oh = uniforms.oh;
  let ow = uniforms.ow;
  let total = uniforms.batch * oh * ow * C;
  if (idx >= total) { return; }
  let ch = idx % C;
  let ox = (idx / C) % ow;
  let oy = (idx / (C * ow)) % oh;
  let b = idx / (C * ow * oh);
  let ay = srcAxis(oy, uniforms.height, oh);
  let ax = srcAxis(ox, uniforms.width, ow);
  let y0 = i32(ay.x);
  let y1 = i32(ay.y);
  let x0 = i32(ax.x);
  let x1 = i32(ax.y);
  let W = uniforms.width;
  let rowBase = b * uniforms.height;
  let v00 = x[((rowBase + y0) * W + x0) * C + ch];
  let v01 = x[((rowBase + y0) * W + x1) * C + ch];
  let v10 = x[((rowBase + y1) * W + x0) * C + ch];
  let v11 = x[((rowBase + y1) * W + x1) * C + ch];
  let top = v00 + (v01 - v00) * ax.z;
  let bottom = v10 + (v11 - v10) * ax.z;
  result[idx] = top + (bottom - top) * ay.z;
}
`;
}

class BilinearDownProgram implements WebGPUProgramLike {
  outputShape: number[];
  shaderKey = 'infLlavaBilinearResize';
  dispatchLayout = { x: [0], y: [1], z: [2] }; // main() computes its own flat index
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  variableNames = ['x'];
  uniforms = 'batch : i32, height : i32, width : i32, channels : i32, oh : i32, ow : i32,';

  constructor(outputShape: number[], dispatch: [number, number, number]) {
    this.outputShape = outputShape;
    this.dispatch = dispatch;
  }

  getUserCode(): string {
    return bilinearDownWGSL();
  }
}

interface KernelAttrs {
  oh: number;
  ow: number;
}

const runKernel = defineWebGPUKernel<KernelAttrs>(BILINEAR_DOWN_KERNEL, ({ x }, backend, { oh, ow }) => {
  const [B, H, W, C] = x!.shape as [number, number, number, number];
  const [gx, gy] = grid2D(ceilDiv(B * oh * ow * C, THREADS), backend.device.limits.maxComputeWorkgroupsPerDimension);
  const program = new BilinearDownProgram([B, oh, ow, C], [gx, gy, 1]);
  const uniforms: ProgramUniform = [
    { type: 'int32', data: [B] },
    { type: 'int32', data: [H] },
    { type: 'int32', data: [W] },
    { type: 'int32', data: [C] },
    { type: 'int32', data: [oh] },
    { type: 'int32', data: [ow] },
  ];
  return backend.runWebGPUProgram(program, [x!], 'float32', uniforms);
});

/** Why the kernel cannot take this input on the active webgpu backend, or null. */
export function bilinearDownRefusal(shape: readonly number[], [oh, ow]: readonly [number, number]): string | null {
  const [B, H, W, C] = shape as [number, number, number, number];
  const largest = Math.max(B * H * W * C, B * oh * ow * C);
  const limits = webgpuLimits();
  if (largest * 4 > limits.maxStorageBufferBindingSize || largest >= 2 ** 31) return `a tensor of ${largest} elements exceeds the storage binding limit`;
  if (ceilDiv(B * oh * ow * C, THREADS) > limits.maxComputeWorkgroupsPerDimension ** 2) return 'too many workgroups';
  return null;
}

/** The resize on the active webgpu backend; `x` float32 `[B, H, W, C]`. Returns one new tensor. */
export function bilinearDown(x: Tensor4D, [oh, ow]: readonly [number, number]): Tensor4D {
  return runKernel({ x }, { oh, ow }) as Tensor4D;
}
