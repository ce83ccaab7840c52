/**
 * bf16 packing: two bf16 values per int32 word, `word j of row n = bits(w[n, 2j]) |
 * bits(w[n, 2j + 1]) << 16` — exactly a bf16 checkpoint's bytes read as little-endian int32.
 * Browser-safe.
 */
import { allocatePacked, checkSource, dequantizeFormatRows, type PackOptions, type PackedWeight } from './groups.js';

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/**
 * The bf16 bits of a float32 value, rounded to nearest even (as PyTorch's `.to(torch.bfloat16)`;
 * NaN becomes the quiet NaN 0x7fc0).
 */
export function float32ToBf16Bits(v: number): number {
  F32[0] = v;
  const u = U32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0 | ((u >>> 16) & 0x8000);
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * Packs a weight `[rows, cols]` (`cols` even) as bf16: from bf16 bits (a Uint16Array: copied
 * as they are) or float32 values (rounded to nearest even).
 */
export function packBf16(values: Float32Array | Uint16Array, shape: readonly [number, number], opts: PackOptions = {}): PackedWeight {
  checkSource('packBf16', 'bf16', values, shape, opts.name);
  const [rows, cols] = shape;
  const out = allocatePacked('bf16', rows, cols, opts.name);
  const words = out.data;
  if (values instanceof Uint16Array) {
    for (let j = 0; j < words.length; j++) words[j] = values[2 * j]! | (values[2 * j + 1]! << 16);
  } else {
    for (let j = 0; j < words.length; j++) words[j] = float32ToBf16Bits(values[2 * j]!) | (float32ToBf16Bits(values[2 * j + 1]!) << 16);
  }
  return out;
}

/** Rows `[startRow, startRow + count)` of a bf16 packed weight, widened into `out` (`count × cols`). */
export function dequantizeBf16Into(p: PackedWeight, startRow: number, count: number, out: Float32Array): void {
  const first = (startRow * p.cols) >> 1;
  const n = (count * p.cols) >> 1;
  const u = new Uint32Array(out.buffer, out.byteOffset, 2 * n);
  const data = p.data;
  for (let j = 0; j < n; j++) {
    const w = data[first + j]!;
    u[2 * j] = w << 16;
    u[2 * j + 1] = w & 0xffff0000;
  }
}

/** Rows `[startRow, startRow + count)` of a bf16 packed weight as float32 `count × cols` (exact). */
export function dequantizeBf16Rows(p: PackedWeight, startRow: number, count: number): Float32Array {
  return dequantizeFormatRows('dequantizeBf16Rows', 'bf16', p, startRow, count, dequantizeBf16Into);
}
