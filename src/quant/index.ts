/**
 * Packed and quantised weights (docs/quantization.md): bf16 pairs, q8 (symmetric int8 groups)
 * and q4 (4-bit groups with a float min) in int32 words, float32 scales per group of up to 64
 * weights along the input dimension. Browser-safe: pure TypeScript.
 */
import { dequantizeBf16Into, packBf16 } from './bf16.js';
import { checkPackedWeight, checkRowRange, type PackOptions, type PackedFormat, type PackedWeight } from './groups.js';
import { dequantizeQ4Into, quantizeQ4, quantizeQ4RowsInto } from './q4.js';
import { dequantizeQ8Into, quantizeQ8, quantizeQ8RowsInto } from './q8.js';

export { float32ToBf16Bits, packBf16, dequantizeBf16Rows } from './bf16.js';
export { quantizeQ8, dequantizeQ8Rows } from './q8.js';
export { quantizeQ4, dequantizeQ4Rows } from './q4.js';
export {
  PACKED_FORMATS,
  QUANT_FORMATS,
  allocatePacked,
  checkPackedWeight,
  packedByteLength,
  quantGroupSize,
  type PackOptions,
  type PackedFormat,
  type PackedWeight,
  type QuantFormat,
} from './groups.js';

/** Packs (bf16) or quantises (q8, q4) a weight `[rows, cols]` given as float32 or bf16 bits. */
export function packWeight(format: PackedFormat, values: Float32Array | Uint16Array, shape: readonly [number, number], opts: PackOptions = {}): PackedWeight {
  if (format === 'bf16') return packBf16(values, shape, opts);
  if (format === 'q8') return quantizeQ8(values, shape, opts);
  if (format === 'q4') return quantizeQ4(values, shape, opts);
  throw new Error(`packWeight: format must be 'bf16', 'q8' or 'q4', got ${JSON.stringify(format)}`);
}

/**
 * Quantises `count` rows of float32 values into rows `[startRow, startRow + count)` of `out`
 * (q8 or q4), for filling a weight block by block (no float32 copy of the whole matrix).
 */
export function quantizeRowsInto(out: PackedWeight, src: Float32Array, startRow: number, count: number, name?: string): void {
  checkRowRange('quantizeRowsInto', out, startRow, count);
  if (src.length !== count * out.cols) throw new Error(`quantizeRowsInto: ${src.length} values, expected ${count} rows × ${out.cols}`);
  if (out.format === 'q8') quantizeQ8RowsInto(src, count, out, startRow, name);
  else if (out.format === 'q4') quantizeQ4RowsInto(src, count, out, startRow, name);
  else throw new Error(`quantizeRowsInto: expected a q8 or q4 weight, got ${out.format}`);
}

/**
 * Rows `[startRow, startRow + count)` of a packed weight, dequantised to float32
 * `count × cols` (bf16 exactly; q8 `fround(q · scale)`; q4 `fround(fround(q · scale) + min)`).
 */
export function dequantizeRows(packed: PackedWeight, startRow: number, count: number): Float32Array {
  checkPackedWeight(packed, 'dequantizeRows');
  checkRowRange('dequantizeRows', packed, startRow, count);
  const out = new Float32Array(count * packed.cols);
  dequantizeRowsInto(packed, startRow, count, out);
  return out;
}

/** {@link dequantizeRows} into `out` (no checks: internal). */
export function dequantizeRowsInto(p: PackedWeight, startRow: number, count: number, out: Float32Array): void {
  if (p.format === 'q8') dequantizeQ8Into(p, startRow, count, out);
  else if (p.format === 'q4') dequantizeQ4Into(p, startRow, count, out);
  else dequantizeBf16Into(p, startRow, count, out);
}
