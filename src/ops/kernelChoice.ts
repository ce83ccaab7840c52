/**
 * How an op with a fused webgpu kernel beside its tfjs composition picks one
 * (`opts.kernel`): `'auto'` the kernel where it can run, `'fused'` the kernel or an error saying
 * why not, `'composition'` tfjs ops (every backend, differentiable). One definition for every op.
 */
import { engine, getBackend } from '@tensorflow/tfjs-core';

export const KERNEL_CHOICES = ['auto', 'fused', 'composition'] as const;
export type KernelChoice = (typeof KERNEL_CHOICES)[number];

/** `opts.kernel` checked, `'auto'` when absent; the error names `fn`. */
export function checkKernelChoice(fn: string, kernel: unknown): KernelChoice {
  const k = kernel ?? 'auto';
  if (!(KERNEL_CHOICES as readonly unknown[]).includes(k)) throw new Error(`${fn}: opts.kernel must be one of ${KERNEL_CHOICES.join(', ')}, got ${JSON.stringify(k)}`);
  return k as KernelChoice;
}

const NO_GRADIENT = "a gradient tape is recording and the kernel has no gradient (the composition has one: use it, or opts.kernel 'auto')";

/**
 * Why no webgpu kernel can run now (another backend is active, or a gradient tape records:
 * `underTape` says why that matters for this op), or null.
 */
export function webgpuKernelRefusal(underTape = NO_GRADIENT): string | null {
  const backend = getBackend();
  if (backend !== 'webgpu') return `it runs on the webgpu backend only (active: ${backend})`;
  if (engine().isTapeOn()) return underTape;
  return null;
}

/** The error of `opts.kernel: 'fused'` when the kernel cannot run: `why`. */
export function cannotFuse(fn: string, why: string): Error {
  return new Error(`${fn}: opts.kernel 'fused' cannot run here: ${why}`);
}
