/**
 * q4: asymmetric 4-bit groups with a float zero point (docs/quantization.md). Per group of `G`
 * weights along `K`:
 *
 *   lo = min w, hi = max w               scale = fround(fround(hi - lo) / 15), min = lo
 *   q  = 0 if scale == 0, else x = fround(fround(w - lo) / scale), q = clamp(floor(fround(x + 0.5)), 0, 15)
 *   w ≈ fround(fround(q · scale) + min)
 *
 * Every step in float32. Nibble `b` (bits 4b..4b+3) of word `j` of row `n` holds `q[n, 8j + b]`.
 * Browser-safe.
 */
import { dequantizeFormatRows, quantizeByBlocks, type PackOptions, type PackedWeight } from './groups.js';

const f = Math.fround;
const MAX_F32 = 3.4028234663852886e38;

function q4Of(w: number, lo: number, scale: number): number {
  const x = f(f(w - lo) / scale);
  const q = Math.floor(f(x + 0.5));
  return q < 0 ? 0 : q > 15 ? 15 : q;
}

/**
 * Quantises `count` rows of float32 values (`src`, `count × cols`) into rows
 * `[startRow, startRow + count)` of `out` (q4). A non-finite weight, or a group whose range
 * overflows float32, is an error naming its row and column.
 */
export function quantizeQ4RowsInto(src: Float32Array, count: number, out: PackedWeight, startRow: number, name?: string): void {
  const K = out.cols;
  const G = out.groupSize;
  const groups = K / G;
  const data = out.data;
  const scales = out.scales!;
  const mins = out.mins!;
  const what = () => (name ? `tensor ${JSON.stringify(name)}` : 'the weight');
  for (let r = 0; r < count; r++) {
    const row = r * K;
    const n = startRow + r;
    for (let g = 0; g < groups; g++) {
      const base = row + g * G;
      let lo = Infinity;
      let hi = -Infinity;
      for (let k = 0; k < G; k++) {
        const v = src[base + k]!;
        if (!(Math.abs(v) <= MAX_F32)) throw new Error(`quantizeQ4: ${what()}[${n}, ${g * G + k}] is ${v}: only finite weights can be quantised`);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const scale = f(f(hi - lo) / 15);
      if (!(scale <= MAX_F32)) throw new Error(`quantizeQ4: ${what()} row ${n}, columns [${g * G}, ${(g + 1) * G}): the range ${lo}..${hi} overflows float32`);
      scales[n * groups + g] = scale;
      mins[n * groups + g] = lo;
      let word = (n * K + g * G) >> 3;
      for (let k = 0; k < G; k += 8) {
        if (scale === 0) {
          data[word++] = 0;
          continue;
        }
        let w = 0;
        for (let b = 0; b < 8; b++) w |= q4Of(src[base + k + b]!, lo, scale) << (4 * b);
        data[word++] = w;
      }
    }
  }
}

/**
 * q4 quantisation of a weight `[rows, cols]` (`cols` = K, a multiple of 8; group size by
 * {@link quantGroupSize}). `values`: float32, or bf16 bits as a Uint16Array.
 */
export function quantizeQ4(values: Float32Array | Uint16Array, shape: readonly [number, number], opts: PackOptions = {}): PackedWeight {
  return quantizeByBlocks('quantizeQ4', 'q4', values, shape, quantizeQ4RowsInto, opts.name);
}

/** Rows `[startRow, startRow + count)` of a q4 weight, dequantised into `out` (`count × cols`). */
export function dequantizeQ4Into(p: PackedWeight, startRow: number, count: number, out: Float32Array): void {
  const K = p.cols;
  const G = p.groupSize;
  const groups = K / G;
  const data = p.data;
  const scales = p.scales!;
  const mins = p.mins!;
  let o = 0;
  let word = (startRow * K) >> 3;
  for (let n = startRow; n < startRow + count; n++) {
    for (let g = 0; g < groups; g++) {
      const s = scales[n * groups + g]!;
      const m = mins[n * groups + g]!;
      for (let k = 0; k < G; k += 8) {
        const w = data[word++]!;
        for (let b = 0; b < 32; b += 4) out[o++] = f(f(((w >>> b) & 15) * s) + m);
      }
    }
  }
}

/** Rows `[startRow, startRow + count)` of a q4 weight as float32 `count × cols`. */
export function dequantizeQ4Rows(p: PackedWeight, startRow: number, count: number): Float32Array {
  return dequantizeFormatRows('dequantizeQ4Rows', 'q4', p, startRow, count, dequantizeQ4Into);
}
