/**
 * Rotary position embeddings (RoPE) as transformers computes them: inverse frequencies in
 * float32, cos/sin tables per position, and `x·cos + rotate_half(x)·sin`.
 */
import { add, concat, mul, slice, tensor2d, type Tensor2D, type Tensor4D } from '@tensorflow/tfjs-core';
import { checkConfig, type LlamaConfig } from './config.js';

/**
 * The rotary inverse frequencies, `[headDim / 2]`, as transformers computes them in float32
 * (every step rounded to float32 as torch does; `pow` may differ from torch's by an ulp):
 * `1 / theta^(2i / hd)`, then for `llama3` its `_compute_llama3_parameters`: wavelengths
 * `2π / f` longer than `orig / low_freq_factor` are divided by `factor`, shorter than
 * `orig / high_freq_factor` kept, and in between interpolated with
 * `s = (orig / wavelen - low) / (high - low)`: `(1 - s) · f / factor + s · f`.
 */
export function llamaRopeInvFreq(config: LlamaConfig): Float32Array {
  checkConfig(config, 'llamaRopeInvFreq');
  const f = Math.fround;
  const dim = config.headDim;
  const base = f(config.ropeTheta);
  const inv = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = f(1 / f(Math.pow(base, f((2 * i) / dim))));
  const s = config.ropeScaling;
  if (s.type === 'linear') {
    for (let i = 0; i < inv.length; i++) inv[i] = f(inv[i]! / f(s.factor));
  } else if (s.type === 'llama3') {
    const factor = f(s.factor);
    const low = f(s.lowFreqFactor);
    const old = f(s.originalMaxPositionEmbeddings);
    const lowWavelen = f(s.originalMaxPositionEmbeddings / s.lowFreqFactor);
    const highWavelen = f(s.originalMaxPositionEmbeddings / s.highFreqFactor);
    const span = f(s.highFreqFactor - s.lowFreqFactor);
    const twoPi = f(2 * Math.PI);
    for (let i = 0; i < inv.length; i++) {
      const fr = inv[i]!;
      const wavelen = f(f(1 / fr) * twoPi); // torch: scalar / t = t.reciprocal() * scalar
      const scaled = wavelen > lowWavelen ? f(fr / factor) : fr;
      const smooth = f(f(f(f(1 / wavelen) * old) - low) / span);
      const smoothed = f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
      const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      inv[i] = medium ? smoothed : scaled;
    }
  }
  return inv;
}

/**
 * cos and "signed" sin tables for positions `[start, start + T)`, each `[T, hd]`:
 * `cos = cos(cat(f, f))`, `sinSigned = cat(-sin(f), sin(f))` with `f = pos · invFreq` (float32),
 * so that HF's `x·cos + rotate_half(x)·sin` = `x·cos + cat(x2, x1)·sinSigned`.
 */
export function ropeTables(invFreq: Float32Array, start: number, T: number): { cos: Tensor2D; sinSigned: Tensor2D } {
  const half = invFreq.length;
  const hd = 2 * half;
  const cos = new Float32Array(T * hd);
  const sin = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) {
    const pos = Math.fround(start + t);
    for (let j = 0; j < half; j++) {
      const a = Math.fround(pos * invFreq[j]!);
      const c = Math.cos(a);
      const s = Math.sin(a);
      cos[t * hd + j] = c;
      cos[t * hd + half + j] = c;
      sin[t * hd + j] = -s;
      sin[t * hd + half + j] = s;
    }
  }
  return { cos: tensor2d(cos, [T, hd]), sinSigned: tensor2d(sin, [T, hd]) };
}

/** x·cos + rotate_half(x)·sin over `[B, n, T, hd]`, tables `[T, hd]`. */
export function applyRope(x: Tensor4D, cos: Tensor2D, sinSigned: Tensor2D): Tensor4D {
  const half = x.shape[3] / 2;
  const x1 = slice(x, [0, 0, 0, 0], [-1, -1, -1, half]); // [B, n, T, hd/2]
  const x2 = slice(x, [0, 0, 0, half], [-1, -1, -1, half]);
  return add(mul(x, cos), mul(concat([x2, x1], 3), sinSigned));
}
