/**
 * The packed-weight linear layer (`packedLinear`, bf16 / q8 / q4): decode GEMVs (GB/s of weight
 * bytes read) and prefill GEMMs, on random packed weights made on the device.
 */
import * as tf from '@tensorflow/tfjs-core';
import { packedLinear, packedLinearPlan, type PackedLinear, type PackedLinearOptions, type PackedWeightFormat } from '../../src/index.js';
import { randn, type GpuCase, type Variant } from './case.js';
import { log } from './options.js';

export const PACKED_FORMATS: PackedWeightFormat[] = ['bf16', 'q8', 'q4'];

/** Packed linear variants: options on top of `kernel: 'fused'`; the GEMV's two reductions where the device has subgroups. */
const PACKED_GEMV_VARIANTS: Array<[label: string, opts: PackedLinearOptions]> = [
  ['fused, subgroup reduction', { reduction: 'subgroup' }],
  ['fused, workgroup reduction', { reduction: 'workgroup' }],
];

/** Bytes per weight of each format at G = 64 (words, plus 4-byte scales and mins per 64 weights). */
export const packedBytes = (format: PackedWeightFormat, N: number, K: number) => N * K * (format === 'bf16' ? 2 : format === 'q8' ? 1 + 4 / 64 : 0.5 + 8 / 64);

/**
 * Pseudo-random values in [0, 1) of shape [R, C], made on the device: a sine hash of a row and a
 * column value (host-side [R, 1] and [1, C], broadcast on the GPU). tf.randomUniform would fill
 * the whole tensor on the host (over 1 GB for lm_head).
 */
function deviceNoise(R: number, C: number, seed: number): tf.Tensor2D {
  const fract = (v: number) => v - Math.floor(v);
  return tf.tidy(() => {
    const r = tf.tensor2d(Float32Array.from({ length: R }, (_, i) => fract(Math.sin((i + 1) * 12.9898 + seed) * 43758.5453) * 1000), [R, 1]);
    const c = tf.tensor2d(Float32Array.from({ length: C }, (_, j) => fract(Math.sin((j + 1) * 78.233 + seed) * 43758.5453)), [1, C]);
    const h = tf.mul(tf.sin(tf.add(r, c)), 43758.5453);
    return tf.sub(h, tf.floor(h)) as tf.Tensor2D;
  });
}

/**
 * A random packed weight [N, K] made on the device (no host copy): q8/q4 words are any int32;
 * bf16 words are two bf16 of magnitude in [1/8, 1) with random signs (built in f32 and cast, so
 * the low bits of the low half are rounded: still finite, normal values). Scales ~ 1/64, mins ~ −1/8.
 */
function randomPacked(format: PackedWeightFormat, N: number, K: number, seed: number): PackedLinear {
  const [data, scales, mins] = tf.tidy(() => {
    const KW = K / (format === 'bf16' ? 2 : format === 'q8' ? 4 : 8);
    const h = deviceNoise(N, KW, seed);
    let data: tf.Tensor2D;
    if (format === 'bf16') {
      const frac = (t: tf.Tensor) => tf.sub(t, tf.floor(t));
      const half = (u: tf.Tensor, signU: tf.Tensor) => {
        const mag = tf.add(tf.floor(tf.mul(u, 384)), 0x3e00); // bf16 exponents of [1/8, 1)
        return tf.where(tf.less(signU, 0.5), tf.add(mag, 0x8000), mag);
      };
      const hi = half(h, frac(tf.mul(h, 13.7)));
      const lo = half(frac(tf.add(tf.mul(h, 7.31), 0.5)), frac(tf.mul(h, 29.3)));
      // word = hi·2¹⁶ + lo as int32: a high half ≥ 0x8000 makes it negative
      const hiSigned = tf.where(tf.greaterEqual(hi, 0x8000), tf.sub(hi, 0x10000), hi);
      data = tf.cast(tf.add(tf.mul(hiSigned, 65536), lo), 'int32') as tf.Tensor2D;
    } else {
      data = tf.cast(tf.sub(tf.mul(h, 4294967040), 2147483520), 'int32') as tf.Tensor2D;
    }
    const scales = format !== 'bf16' ? (tf.add(tf.mul(deviceNoise(N, K / 64, seed + 1), 1 / 64), 0.5 / 64) as tf.Tensor2D) : undefined;
    const mins = format === 'q4' ? (tf.sub(tf.mul(deviceNoise(N, K / 64, seed + 2), 0.05), 0.15) as tf.Tensor2D) : undefined;
    return [data, scales, mins].filter((t): t is tf.Tensor2D => !!t);
  });
  return { format, data: data!, ...(scales ? { scales } : {}), ...(mins ? { mins } : {}) };
}

/** x [m, k] · W [n, k]ᵀ in `format`; --quick adds the composition (dequantise + matMul) as a variant. */
export function packedCase(label: string, format: PackedWeightFormat, m: number, k: number, n: number, quick: boolean): GpuCase {
  return {
    name: `packed ${label} ${format} ${m}x${k}->${n}`,
    kind: 'packed',
    params: { format, m, k, n },
    shape: `x [${m}, ${k}] · ${format} W [${n}, ${k}]ᵀ`,
    flops: 2 * m * k * n,
    bytes: packedBytes(format, n, k),
    pipeline: true,
    warmup: 2,
    prepare: () => {
      const layer = randomPacked(format, n, k, 11);
      const x = randn([m, k], 12) as tf.Tensor2D;
      const gemv = packedLinearPlan(x, layer)?.kind === 'gemv';
      const variants: Variant[] = [];
      for (const [l, o] of gemv ? PACKED_GEMV_VARIANTS : [['fused', {}] as [string, PackedLinearOptions]]) {
        try {
          packedLinearPlan(x, layer, { ...o, kernel: 'fused' }); // throws when it cannot run (subgroups absent)
          variants.push({ label: l, run: () => packedLinear(x, layer, { ...o, kernel: 'fused' }) });
        } catch (e) {
          log(`  (${l}: not here: ${(e as Error).message})`);
        }
      }
      if (quick) variants.push({ label: 'composition (dequantise + matMul)', run: () => packedLinear(x, layer, { kernel: 'composition' }) });
      return { variants, dispose: () => tf.dispose([x, layer.data, ...(layer.scales ? [layer.scales] : []), ...(layer.mins ? [layer.mins] : [])]) };
    },
  };
}
