/**
 * Packed weight formats shared by the CPU and WebGPU sides (docs/quantization.md): a linear
 * weight `W` `[N = out, K = in]`, row-major as PyTorch stores it, held as little-endian int32
 * words `[N, words per row]`, with float32 scales (and mins) per group of `G` weights along `K`.
 *
 * | format | words per row | per group                | bytes per weight (G = 64) |
 * | ------ | ------------- | ------------------------ | ------------------------- |
 * | bf16   | K / 2         | —                        | 2                         |
 * | q8     | K / 4         | scale (symmetric)        | 1 + 4/64 = 1.0625         |
 * | q4     | K / 8         | scale and min            | 0.5 + 8/64 = 0.625        |
 *
 * Browser-safe: no Node imports.
 */

/** A packed weight format. */
export type PackedFormat = 'bf16' | 'q8' | 'q4';
/** The quantised formats (what `quantize` options take). */
export type QuantFormat = 'q8' | 'q4';
/** Every {@link PackedFormat}. */
export const PACKED_FORMATS: readonly PackedFormat[] = ['bf16', 'q8', 'q4'];
/** Every {@link QuantFormat}. */
export const QUANT_FORMATS: readonly QuantFormat[] = ['q8', 'q4'];

/** A `quantize` option, checked: `'q8'`, `'q4'` or undefined; anything else is an error naming `fn`. */
export function checkQuantizeOption(fn: string, quantize: unknown): QuantFormat | undefined {
  if (quantize === undefined || (QUANT_FORMATS as readonly unknown[]).includes(quantize)) return quantize as QuantFormat | undefined;
  throw new Error(`${fn}: quantize must be 'q8' or 'q4', got ${typeof quantize === 'string' ? JSON.stringify(quantize) : String(quantize)}`);
}

/**
 * A packed 2-D weight `[rows = N, cols = K]`.
 *
 * - `data`: int32 words, row-major `[N, K / 2]` (bf16), `[N, K / 4]` (q8) or `[N, K / 8]` (q4).
 * - `scales`: float32 `[N, K / groupSize]` (q8, q4); `mins` the same shape (q4 only).
 *
 * Dequantised values (float32 arithmetic): bf16 `bitcast<f32>(u16 << 16)`; q8
 * `fround(q · scale)`; q4 `fround(fround(q · scale) + min)`.
 */
export interface PackedWeight {
  readonly format: PackedFormat;
  /** `N`, the output features. */
  readonly rows: number;
  /** `K`, the input features. */
  readonly cols: number;
  /** `G`: weights per scale along `K` (64, 32, 16 or 8, see {@link quantGroupSize}); 0 for bf16 (no groups). */
  readonly groupSize: number;
  readonly data: Int32Array;
  readonly scales?: Float32Array;
  readonly mins?: Float32Array;
}

/** Options of the packing functions. */
export interface PackOptions {
  /** The tensor's name, for error messages. */
  name?: string;
}

const label = (name: string | undefined) => (name ? `tensor ${JSON.stringify(name)}` : 'the weight');

/**
 * The group size of a quantised weight with `cols` (`K`) input features: 64 when 64 divides
 * `K`, else the largest of 32, 16, 8 that divides it. `K` not a multiple of 8 is an error
 * naming the tensor.
 */
export function quantGroupSize(cols: number, name?: string): number {
  if (!Number.isSafeInteger(cols) || cols < 1) throw new Error(`quantGroupSize: ${label(name)}: K must be a positive integer, got ${cols}`);
  for (const g of [64, 32, 16, 8]) if (cols % g === 0) return g;
  throw new Error(`quantGroupSize: ${label(name)} has K = ${cols} input features, not a multiple of 8: it cannot be quantised (groups of 64, 32, 16 or 8 along K)`);
}

/** Values per int32 word: 2 (bf16), 4 (q8), 8 (q4). */
export function valuesPerWord(format: PackedFormat): number {
  return format === 'bf16' ? 2 : format === 'q8' ? 4 : 8;
}

/** The bytes a packed weight holds: data words, scales and mins. */
export function packedByteLength(p: PackedWeight): number {
  return p.data.byteLength + (p.scales?.byteLength ?? 0) + (p.mins?.byteLength ?? 0);
}

/** Checks a shape `[rows, cols]` for `format` (group rule, parity) and returns the group size. */
export function checkPackShape(fn: string, format: PackedFormat, rows: number, cols: number, name?: string): number {
  if (!Number.isSafeInteger(rows) || rows < 1 || !Number.isSafeInteger(cols) || cols < 1) {
    throw new Error(`${fn}: ${label(name)}: shape must be [rows, cols] of positive integers, got [${rows}, ${cols}]`);
  }
  if (format === 'bf16') {
    if (cols % 2 !== 0) throw new Error(`${fn}: ${label(name)} has ${cols} columns: bf16 packing needs an even number (two values per int32)`);
    return 0;
  }
  try {
    return quantGroupSize(cols, name);
  } catch (e) {
    throw new Error(`${fn}: ${(e as Error).message.replace(/^quantGroupSize: /, '')}`);
  }
}

/** A zeroed packed weight of `format` and shape `[rows, cols]`, to be filled row block by row block. */
export function allocatePacked(format: PackedFormat, rows: number, cols: number, name?: string): PackedWeight {
  const groupSize = checkPackShape('allocatePacked', format, rows, cols, name);
  const data = new Int32Array((rows * cols) / valuesPerWord(format));
  if (format === 'bf16') return { format, rows, cols, groupSize, data };
  const groups = rows * (cols / groupSize);
  const scales = new Float32Array(groups);
  return format === 'q8' ? { format, rows, cols, groupSize, data, scales } : { format, rows, cols, groupSize, data, scales, mins: new Float32Array(groups) };
}

/**
 * Validates a packed weight: its format, shape, group size (the rule of {@link quantGroupSize})
 * and the lengths of its arrays. Errors name the tensor and the problem.
 */
export function checkPackedWeight(p: PackedWeight, fn: string, name?: string): void {
  if (!p || typeof p !== 'object') throw new Error(`${fn}: ${label(name)}: expected a PackedWeight object`);
  if (!(PACKED_FORMATS as readonly string[]).includes(p.format)) throw new Error(`${fn}: ${label(name)}: format must be one of ${PACKED_FORMATS.join(', ')}, got ${JSON.stringify(p.format)}`);
  const g = checkPackShape(fn, p.format, p.rows, p.cols, name);
  if (p.groupSize !== g) throw new Error(`${fn}: ${label(name)}: groupSize must be ${g} for ${p.format} with K = ${p.cols}, got ${p.groupSize}`);
  if (!(p.data instanceof Int32Array)) throw new Error(`${fn}: ${label(name)}: data must be an Int32Array`);
  const words = (p.rows * p.cols) / valuesPerWord(p.format);
  if (p.data.length !== words) throw new Error(`${fn}: ${label(name)}: data holds ${p.data.length} words, expected ${words} for ${p.format} [${p.rows}, ${p.cols}]`);
  const groups = p.format === 'bf16' ? 0 : p.rows * (p.cols / g);
  for (const key of ['scales', 'mins'] as const) {
    const want = key === 'scales' ? p.format !== 'bf16' : p.format === 'q4';
    const a = p[key];
    if (!want) {
      if (a !== undefined) throw new Error(`${fn}: ${label(name)}: ${p.format} has no ${key}`);
      continue;
    }
    if (!(a instanceof Float32Array)) throw new Error(`${fn}: ${label(name)}: ${p.format} needs ${key} as a Float32Array`);
    if (a.length !== groups) throw new Error(`${fn}: ${label(name)}: ${key} holds ${a.length} values, expected ${groups} ([${p.rows}, ${p.cols / g}])`);
  }
}

/** Checks the source values of a packing function and returns the group size. */
export function checkSource(fn: string, format: PackedFormat, values: Float32Array | Uint16Array, shape: readonly [number, number], name?: string): number {
  if (!(values instanceof Float32Array) && !(values instanceof Uint16Array)) {
    throw new Error(`${fn}: ${label(name)}: values must be a Float32Array (float32) or a Uint16Array (bf16 bits), got ${Object.prototype.toString.call(values)}`);
  }
  if (!Array.isArray(shape) || shape.length !== 2) throw new Error(`${fn}: ${label(name)}: shape must be [rows, cols], got ${JSON.stringify(shape)}`);
  const [rows, cols] = shape;
  const g = checkPackShape(fn, format, rows, cols, name);
  if (values.length !== rows * cols) throw new Error(`${fn}: ${label(name)}: ${values.length} values, expected rows × cols = ${rows * cols}`);
  return g;
}

/** Checks `[startRow, startRow + count)` against the rows of `p`. */
export function checkRowRange(fn: string, p: PackedWeight, startRow: number, count: number): void {
  if (!Number.isSafeInteger(startRow) || !Number.isSafeInteger(count) || startRow < 0 || count < 0 || startRow + count > p.rows) {
    throw new Error(`${fn}: rows [${startRow}, ${startRow + count}) are outside the weight's ${p.rows} rows`);
  }
}

/** bf16 bits → float32 values (exact). */
export function bf16BitsToFloat32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const u = new Uint32Array(out.buffer, out.byteOffset, bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return out;
}

/** Float32 values of `values[start, start + n)` (bf16 bits widened; float32 viewed, no copy). */
export function sourceRows(values: Float32Array | Uint16Array, start: number, n: number): Float32Array {
  if (values instanceof Float32Array) return values.subarray(start, start + n);
  return bf16BitsToFloat32(values.subarray(start, start + n));
}

/** How a format fills rows `[startRow, startRow + count)` of `out` from float32 values. */
export type RowsInto = (src: Float32Array, count: number, out: PackedWeight, startRow: number, name?: string) => void;

/**
 * Quantises a weight `[rows, cols]` block by block with `rowsInto` (q8, q4): bf16 sources are
 * widened a block of rows at a time, so no float32 copy of the whole matrix is made.
 */
export function quantizeByBlocks(fn: string, format: QuantFormat, values: Float32Array | Uint16Array, shape: readonly [number, number], rowsInto: RowsInto, name?: string): PackedWeight {
  checkSource(fn, format, values, shape, name);
  const [rows, cols] = shape;
  const out = allocatePacked(format, rows, cols, name);
  const block = Math.max(1, Math.floor((1 << 16) / cols));
  for (let r = 0; r < rows; r += block) {
    const n = Math.min(block, rows - r);
    rowsInto(sourceRows(values, r * cols, n * cols), n, out, r, name);
  }
  return out;
}

/** Rows `[startRow, startRow + count)` of a `format` weight as float32 `count × cols`, checked, through `into`. */
export function dequantizeFormatRows(
  fn: string,
  format: PackedFormat,
  p: PackedWeight,
  startRow: number,
  count: number,
  into: (p: PackedWeight, startRow: number, count: number, out: Float32Array) => void,
): Float32Array {
  checkPackedWeight(p, fn);
  if (p.format !== format) throw new Error(`${fn}: expected a ${format} weight, got ${p.format}`);
  checkRowRange(fn, p, startRow, count);
  const out = new Float32Array(count * p.cols);
  into(p, startRow, count, out);
  return out;
}
