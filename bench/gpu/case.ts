/** One GPU case: what it runs, what it counts, and how PyTorch builds the same (gpu/torch_gpu.py). */
import * as tf from '@tensorflow/tfjs-core';
import type { Prepared } from '../cases.js';

/** One implementation of a case: one row. */
export interface Variant extends Pick<Prepared, 'run'> {
  label: string;
}
/** A case's inputs, made once, and its variants on them. */
export interface PreparedVariants extends Pick<Prepared, 'dispose'> {
  variants: Variant[];
}
export type Kind = 'matmul' | 'attention' | 'dem' | 'clip' | 'packed';

export interface GpuCase {
  /** Join key with the PyTorch rows. */
  name: string;
  kind: Kind;
  /** What bench/gpu/torch_gpu.py needs to build the same case. */
  params: Record<string, number | string | boolean>;
  shape: string;
  flops: number;
  /** Bytes that bound the case (packed GEMV: the weight's words, scales and mins), for GB/s. */
  bytes?: number;
  /** Time N calls queued back to back too (not for CLIP: one call is many passes already). */
  pipeline: boolean;
  warmup: number;
  prepare: () => PreparedVariants;
}

export const randn = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);
