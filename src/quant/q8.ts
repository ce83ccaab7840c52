/**
 * q8: symmetric 8-bit groups (docs/quantization.md). Per group of `G` weights along `K`:
 *
 *   amax  = max |w|                       scale = fround(amax / 127)
 *   q     = 0 if scale == 0, else x = fround(w / scale), q = clamp(sign(x) · floor(fround(|x| + 0.5)), -127, 127)
 *   w ≈ fround(q · scale)
 *
 * Round half away from zero, every step in float32 (`Math.fround` after each operation is
 * IEEE float32 arithmetic exactly). Byte `b` of word `j` of row `n` holds `q[n, 4j + b]` as
 * int8 two's complement. Browser-safe.
 */
import { dequantizeFormatRows, quantizeByBlocks, type PackOptions, type PackedWeight } from './groups.js';

const f = Math.fround;
const MAX_F32 = 3.4028234663852886e38;

/** Rounds `x / scale` (float32) half away from zero and clamps to [-127, 127]. */
function q8Of(w: number, scale: number): number {
  const x = f(w / scale);
  const a = Math.floor(f(Math.abs(x) + 0.5));
  const q = a > 127 ? 127 : a;
  return x < 0 ? -q : q;
}

/**
 * Quantises `count` rows of float32 values (`src`, `count × cols`) into rows
 * `[startRow, startRow + count)` of `out` (q8). A non-finite weight is an error naming its row
 * and column (`rowOffset` is added to the row for the message).
 */
export function quantizeQ8RowsInto(src: Float32Array, count: number, out: PackedWeight, startRow: number, name?: string): void {
  const K = out.cols;
  const G = out.groupSize;
  const groups = K / G;
  const data = out.data;
  const scales = out.scales!;
  for (let r = 0; r < count; r++) {
    const row = r * K;
    const n = startRow + r;
    for (let g = 0; g < groups; g++) {
      const base = row + g * G;
      let amax = 0;
      for (let k = 0; k < G; k++) {
        const a = Math.abs(src[base + k]!);
        if (!(a <= MAX_F32)) throw new Error(`quantizeQ8: ${name ? `tensor ${JSON.stringify(name)}` : 'the weight'}[${n}, ${g * G + k}] is ${src[base + k]}: only finite weights can be quantised`);
        if (a > amax) amax = a;
      }
      const scale = f(amax / 127);
      scales[n * groups + g] = scale;
      let word = (n * K + g * G) >> 2;
      for (let k = 0; k < G; k += 4) {
        if (scale === 0) {
          data[word++] = 0;
          continue;
        }
        const b0 = q8Of(src[base + k]!, scale);
        const b1 = q8Of(src[base + k + 1]!, scale);
        const b2 = q8Of(src[base + k + 2]!, scale);
        const b3 = q8Of(src[base + k + 3]!, scale);
        data[word++] = (b0 & 0xff) | ((b1 & 0xff) << 8) | ((b2 & 0xff) << 16) | (b3 << 24);
      }
    }
  }
}

/**
 * q8 quantisation of a weight `[rows, cols]` (`cols` = K, a multiple of 8; group size by
 * {@link quantGroupSize}). `values`: float32, or bf16 bits as a Uint16Array (quantised from
 * their exact float32 value).
 */
export function quantizeQ8(values: Float32Array | Uint16Array, shape: readonly [number, number], opts: PackOptions = {}): PackedWeight {
  return quantizeByBlocks('quantizeQ8', 'q8', values, shape, quantizeQ8RowsInto, opts.name);
}

/** Rows `[startRow, startRow + count)` of a q8 weight, dequantised into `out` (`count × cols`). */
export function dequantizeQ8Into(p: PackedWeight, startRow: number, count: number, out: Float32Array): void {
  const K = p.cols;
  const G = p.groupSize;
  const groups = K / G;
  const data = p.data;
  const scales = p.scales!;
  let o = 0;
  let word = (startRow * K) >> 2;
  for (let n = startRow; n < startRow + count; n++) {
    for (let g = 0; g < groups; g++) {
      const s = scales[n * groups + g]!;
      for (let k = 0; k < G; k += 4) {
        const w = data[word++]!;
        out[o++] = f(((w << 24) >> 24) * s);
        out[o++] = f(((w << 16) >> 24) * s);
        out[o++] = f(((w << 8) >> 24) * s);
        out[o++] = f((w >> 24) * s);
      }
    }
  }
}

/** Rows `[startRow, startRow + count)` of a q8 weight as float32 `count × cols`. */
export function dequantizeQ8Rows(p: PackedWeight, startRow: number, count: number): Float32Array {
  return dequantizeFormatRows('dequantizeQ8Rows', 'q8', p, startRow, count, dequantizeQ8Into);
}
