/**
 * Weight residency for models too large for float32: {@link LazyWeights} keeps each tensor's
 * checkpoint bytes (bf16, f16 or f32), or its q8 / q4 quantisation (docs/quantization.md), and
 * decodes float32 tfjs tensors from them only when a forward pass needs them — a whole matrix,
 * a block of rows, or a few gathered rows. Decode steps multiply on the stored form directly
 * (`matMulTransposed`: the CPU GEMV op, src/ops/cpuPackedLinear.ts).
 *
 * Why: tfjs has no bf16. LLaMA-3-8B is 8.03 B parameters: 16.1 GB as bf16, 32.1 GB as float32.
 * On a 24 GB machine only the bf16 bytes fit; the largest matrix decoded at a time (an MLP
 * projection, 14336 × 4096) is 235 MB of float32, the embedding rows of a prompt a few MB.
 *
 * `loadSafetensorsRaw` (./safetensorsRaw.ts) fills a store from a checkpoint, reading only the
 * selected tensors; {@link LazyWeights.fromSafetensors} wraps a file already in memory (any
 * runtime, no copy). No Node built-in is imported (see io/nodeFiles.ts).
 */
import { tensor, type Tensor, type Tensor2D } from '@tensorflow/tfjs-core';
import { WasmArenas, bf16Into } from '../kernels/wasm/gemv.js';
import { cpuPackedMatMul } from '../ops/cpuPackedLinear.js';
import { dequantizeRowsInto, quantizeRowsInto } from '../quant/index.js';
import { allocatePacked, checkPackedWeight, packedByteLength, QUANT_FORMATS, type PackedWeight, type QuantFormat } from '../quant/groups.js';
import { errorMessage } from '../util/format.js';
import {
  SAFETENSORS_DTYPE_BYTES,
  decodeTensor,
  decodeTensorValues,
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  tensorLabel,
  type SafetensorsDtype,
  type SafetensorsEntry,
} from './safetensors.js';

/** One tensor of a {@link LazyWeights} store: its raw little-endian bytes, as in the file. */
export interface LazyTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Exactly `product(shape) × bytes per element` bytes. */
  readonly bytes: Uint8Array;
}

const FLOAT_DTYPES: ReadonlySet<SafetensorsDtype> = new Set(['F32', 'F16', 'BF16']);
const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const BRAND = Symbol.for('inf-llava.LazyWeights');

/** What a {@link LazyWeights} entry holds: its checkpoint dtype, or the packed format it was quantised to. */
export interface LazyEntryInfo {
  /** `'F32'`, `'BF16'`, … (checkpoint bytes), or `'q8'` / `'q4'` (quantised, {@link LazyWeights.packed}). */
  readonly dtype: SafetensorsDtype | QuantFormat;
  readonly shape: readonly number[];
  /** Bytes held: the checkpoint bytes, or the packed words plus scales (and mins). */
  readonly byteLength: number;
}

/** Bytes held by a {@link LazyWeights} store ({@link LazyWeights.byteReport}). */
export interface LazyWeightsBytes {
  /** Everything held. */
  total: number;
  /** Checkpoint bytes by dtype (`{ BF16: …, F32: … }`). */
  raw: Record<string, number>;
  /** Quantised entries' code words by format (`{ q4: … }`). */
  packed: Record<string, number>;
  /** Quantised entries' scales and mins (float32). */
  scales: number;
}

type Entry = LazyTensor | PackedWeight;
const isPacked = (e: Entry): e is PackedWeight => 'format' in e;

/** Rows decoded per block while quantising a stored tensor: 2^20 values (4 MB of float32). */
const QUANTIZE_BLOCK_ELEMENTS = 1 << 20;


/**
 * The checkpoint bytes of a set of tensors, decoded to float32 tfjs tensors on demand.
 *
 * Ownership: the store holds plain JS memory (no tfjs tensors); every tensor it returns is new
 * and the caller's to dispose. {@link dispose} drops the bytes (so the garbage collector can
 * free them even while something still references the store).
 */
export class LazyWeights {
  /** Marks instances across copies of this module (see {@link isLazyWeights}). */
  readonly [BRAND] = true;
  private readonly map = new Map<string, Entry>();
  /** Where quantised entries are allocated: WebAssembly memory, read in place by the gemv. */
  private arenas: WasmArenas | undefined;

  /** @param entries Tensors by name; each is validated as by {@link set}. */
  constructor(entries?: Iterable<readonly [string, LazyTensor]>) {
    if (entries) for (const [name, t] of entries) this.set(name, t);
  }

  /**
   * Wraps the tensors of a safetensors file held in memory (views into `bytes`: no copy).
   * @param filter Keep only the names it accepts (default: all).
   */
  static fromSafetensors(bytes: Uint8Array, filter: (name: string) => boolean = () => true): LazyWeights {
    const ctx = 'LazyWeights.fromSafetensors';
    if (!(bytes instanceof Uint8Array)) throw new Error(`${ctx}: bytes must be a Uint8Array`);
    const n = readSafetensorsHeaderLength(bytes.subarray(0, 8), bytes.length, ctx);
    const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length, ctx);
    const store = new LazyWeights();
    for (const e of header.entries) {
      if (!filter(e.name)) continue;
      store.set(e.name, { dtype: e.dtype, shape: e.shape, bytes: bytes.subarray(header.dataOffset + e.begin, header.dataOffset + e.end) });
    }
    return store;
  }

  /** Adds (or replaces) a tensor; its byte length must match its shape and dtype. */
  set(name: string, t: LazyTensor): void {
    const at = `LazyWeights: ${tensorLabel(name)}`;
    if (!t || !(t.bytes instanceof Uint8Array)) throw new Error(`${at}: bytes must be a Uint8Array`);
    if (!Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPE_BYTES, t.dtype)) throw new Error(`${at}: unsupported dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new Error(`${at}: shape must be an array of non-negative integers, got ${JSON.stringify(t.shape)}`);
    }
    const want = t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (t.bytes.length !== want) throw new Error(`${at}: ${t.bytes.length} bytes, expected ${want} for ${t.dtype} ${JSON.stringify(t.shape)}`);
    this.map.set(name, { dtype: t.dtype, shape: [...t.shape], bytes: t.bytes });
  }

  /**
   * Adds (or replaces) a packed weight (q8 or q4; see docs/quantization.md), validated by
   * `checkPackedWeight`. The store keeps the given arrays (no copy).
   */
  setPacked(name: string, p: PackedWeight): void {
    checkPackedWeight(p, 'LazyWeights.setPacked', name);
    if (p.format === 'bf16') throw new Error(`LazyWeights.setPacked: ${tensorLabel(name)}: bf16 is stored as checkpoint bytes: use set() with dtype 'BF16'`);
    this.map.set(name, { ...p });
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  /** Tensor names, in insertion order. */
  names(): string[] {
    return [...this.map.keys()];
  }

  /** The checkpoint-bytes entry of `name` (dtype, shape, bytes), or undefined (absent, or quantised: see {@link packed}). */
  get(name: string): LazyTensor | undefined {
    const e = this.map.get(name);
    return e && !isPacked(e) ? e : undefined;
  }

  /** The dtype (or quantised format), shape and bytes held of `name`, or undefined. */
  info(name: string): LazyEntryInfo | undefined {
    const e = this.map.get(name);
    if (!e) return undefined;
    if (isPacked(e)) return { dtype: e.format as QuantFormat, shape: [e.rows, e.cols], byteLength: packedByteLength(e) };
    return { dtype: e.dtype, shape: e.shape, byteLength: e.bytes.length };
  }

  /**
   * `name` as a packed weight: a quantised (q8, q4) entry as stored; a 2-D BF16 entry with an
   * even number of columns as its checkpoint bytes read as bf16 words (no copy when they are
   * 4-byte aligned, as `loadSafetensorsRaw` reads them). Undefined otherwise.
   */
  packed(name: string): PackedWeight | undefined {
    const e = this.map.get(name);
    if (!e) return undefined;
    if (isPacked(e)) return e;
    if (e.dtype !== 'BF16' || e.shape.length !== 2 || e.shape[1]! % 2 !== 0 || !IS_LITTLE_ENDIAN) return undefined;
    const [rows, cols] = e.shape as [number, number];
    if (rows === 0) return undefined;
    const data = e.bytes.byteOffset % 4 === 0 ? new Int32Array(e.bytes.buffer, e.bytes.byteOffset, e.bytes.length / 4) : new Int32Array(e.bytes.slice().buffer);
    return { format: 'bf16', rows, cols, groupSize: 0, data };
  }

  /**
   * Replaces the 2-D float (F32, F16, BF16) tensor `name` by its q8 or q4 quantisation
   * (docs/quantization.md), decoding `blockElements` values at a time (default 2^20): the
   * float32 matrix is never whole in memory, the extra memory is one block plus the packed
   * result. The checkpoint bytes are dropped from the store. The packed arrays are allocated in
   * WebAssembly memory where it is available (512 MB arenas owned by the store), so that
   * {@link matMulTransposed} reads them in place. Quantising an entry already in
   * `format` returns it unchanged; one in the other format is an error.
   */
  quantize(name: string, format: QuantFormat, opts: { blockElements?: number } = {}): PackedWeight {
    const fn = 'LazyWeights.quantize';
    if (!(QUANT_FORMATS as readonly string[]).includes(format)) throw new Error(`${fn}: format must be 'q8' or 'q4', got ${JSON.stringify(format)}`);
    const e = this.map.get(name);
    if (!e) throw new Error(`${fn}: no ${tensorLabel(name)} in the store`);
    if (isPacked(e)) {
      if (e.format === format) return e;
      throw new Error(`${fn}: ${tensorLabel(name)} is already quantised to ${e.format}; re-quantising to ${format} would compound the error: load it again from the checkpoint`);
    }
    const { rows, cols } = this.floatMatrix(name, 'quantize');
    const blockElements = opts.blockElements ?? QUANTIZE_BLOCK_ELEMENTS;
    if (!Number.isSafeInteger(blockElements) || blockElements < 1) throw new Error(`${fn}: blockElements must be a positive integer, got ${blockElements}`);
    let out: PackedWeight;
    try {
      out = (this.arenas ??= new WasmArenas()).allocate(format, rows, cols, name) ?? allocatePacked(format, rows, cols, name);
    } catch (err) {
      throw new Error(`${fn}: ${errorMessage(err).replace(/^allocatePacked: /, '')}`);
    }
    const block = Math.max(1, Math.floor(blockElements / cols));
    const buf = new Float32Array(Math.min(block, rows) * cols);
    for (let r = 0; r < rows; r += block) {
      const n = Math.min(block, rows - r);
      const vals = buf.subarray(0, n * cols);
      this.decodeInto(name, e, r * cols, n * cols, vals, 0);
      quantizeRowsInto(out, vals, r, n, name);
    }
    this.map.set(name, out);
    return out;
  }

  /** Total bytes held (checkpoint bytes, and packed words, scales and mins). */
  get byteLength(): number {
    let n = 0;
    for (const e of this.map.values()) n += isPacked(e) ? packedByteLength(e) : e.bytes.length;
    return n;
  }

  /** Bytes held, by kind: checkpoint bytes by dtype, quantised code words by format, and their scales. */
  byteReport(): LazyWeightsBytes {
    const out: LazyWeightsBytes = { total: 0, raw: {}, packed: {}, scales: 0 };
    for (const e of this.map.values()) {
      if (isPacked(e)) {
        out.packed[e.format] = (out.packed[e.format] ?? 0) + e.data.byteLength;
        out.scales += (e.scales?.byteLength ?? 0) + (e.mins?.byteLength ?? 0);
        out.total += packedByteLength(e);
      } else {
        out.raw[e.dtype] = (out.raw[e.dtype] ?? 0) + e.bytes.length;
        out.total += e.bytes.length;
      }
    }
    return out;
  }

  delete(name: string): boolean {
    return this.map.delete(name);
  }

  /** Drops every tensor's bytes. */
  dispose(): void {
    this.map.clear();
    this.arenas?.dispose();
    this.arenas = undefined;
  }

  private entry(name: string, fn: string): Entry {
    const t = this.map.get(name);
    if (!t) throw new Error(`LazyWeights.${fn}: no ${tensorLabel(name)} in the store`);
    return t;
  }

  private floatMatrix(name: string, fn: string): { t: Entry; rows: number; cols: number } {
    const t = this.entry(name, fn);
    if (isPacked(t)) return { t, rows: t.rows, cols: t.cols };
    if (!FLOAT_DTYPES.has(t.dtype) || t.shape.length !== 2) {
      throw new Error(`LazyWeights.${fn}: ${tensorLabel(name)} must be a 2-D F32/F16/BF16 tensor, got ${t.dtype} ${JSON.stringify(t.shape)}`);
    }
    return { t, rows: t.shape[0]!, cols: t.shape[1]! };
  }

  /** Decodes `count` values of `t` starting at element `start` into `out` at `outOffset`. */
  private decodeInto(name: string, t: Entry, start: number, count: number, out: Float32Array, outOffset: number): void {
    if (isPacked(t)) {
      // Whole rows (callers pass row-aligned ranges of 2-D entries).
      dequantizeRowsInto(t, start / t.cols, count / t.cols, out.subarray(outOffset, outOffset + count));
      return;
    }
    const size = SAFETENSORS_DTYPE_BYTES[t.dtype];
    const bytes = t.bytes.subarray(start * size, (start + count) * size);
    if (t.dtype === 'BF16') {
      bf16Into(bytes, out.subarray(outOffset, outOffset + count), count);
      return;
    }
    if (t.dtype === 'F32' && IS_LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
      out.set(new Float32Array(bytes.buffer, bytes.byteOffset, count), outOffset);
      return;
    }
    const entry: SafetensorsEntry = { name, dtype: t.dtype, shape: [count], begin: 0, end: bytes.length };
    out.set(decodeTensorValues(entry, bytes, 'LazyWeights').values as Float32Array, outOffset);
  }

  /**
   * `x · Wᵀ` computed directly on the stored form of a 2-D weight `W` `[out, in]`, reading each
   * weight once (no float32 copy of `W` is made): `x` holds `m` rows of `in` float32 values,
   * the result `m` rows of `out`. For a few rows (a decode step) this runs at memory speed,
   * instead of decoding the weight, copying it into the backend and multiplying.
   *
   * - Quantised (q8, q4) entries: the WebAssembly SIMD gemv, dequantising in registers with
   *   float32 accumulation (a JS gemv where SIMD is missing or switched off by `setBf16Simd`).
   * - BF16 entries: the bf16 SIMD gemv (`in` a multiple of 8).
   *
   * Returns undefined where it does not apply (F32/F16, or bf16 without SIMD): then decode and
   * matMul instead. (The array form of the op `cpuPackedLinear`, src/ops/cpuPackedLinear.ts.)
   */
  matMulTransposed(name: string, x: Float32Array, m: number): Float32Array | undefined {
    const t = this.gemvWeight(name);
    const cols = isPacked(t) ? t.cols : t.shape[1]!;
    if (!Number.isInteger(m) || m < 1 || !(x instanceof Float32Array) || x.length !== m * cols) {
      throw new Error(`LazyWeights.matMulTransposed: x must hold m × ${cols} values for ${tensorLabel(name)}, got ${x?.length} for m = ${m}`);
    }
    return cpuPackedMatMul(t, x, m, tensorLabel(name));
  }

  /**
   * The 2-D float or quantised entry `name` as stored — checkpoint bytes or packed codes, no
   * copy: what {@link matMulTransposed} multiplies (errors are its own).
   */
  gemvWeight(name: string): LazyTensor | PackedWeight {
    return this.floatMatrix(name, 'matMulTransposed').t;
  }

  /**
   * The whole tensor as a new tfjs tensor: F32/F16/BF16 → float32 (exact); q8/q4 dequantised;
   * other dtypes as `readSafetensors` maps them.
   */
  materialize(name: string): Tensor {
    const t = this.entry(name, 'materialize');
    if (isPacked(t)) {
      const out = new Float32Array(t.rows * t.cols);
      dequantizeRowsInto(t, 0, t.rows, out);
      return tensor(out, [t.rows, t.cols], 'float32');
    }
    if (!FLOAT_DTYPES.has(t.dtype)) {
      const entry: SafetensorsEntry = { name, dtype: t.dtype, shape: [...t.shape], begin: 0, end: t.bytes.length };
      return decodeTensor(entry, t.bytes, 'LazyWeights.materialize');
    }
    const n = t.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    this.decodeInto(name, t, 0, n, out, 0);
    return tensor(out, [...t.shape], 'float32');
  }

  /** Rows `[start, start + count)` of a 2-D float or quantised tensor, as float32 `[count, cols]`. */
  rows(name: string, start: number, count: number): Tensor2D {
    const { t, rows, cols } = this.floatMatrix(name, 'rows');
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > rows) {
      throw new Error(`LazyWeights.rows: rows [${start}, ${start + count}) are outside ${tensorLabel(name)}'s ${rows} rows`);
    }
    const out = new Float32Array(count * cols);
    this.decodeInto(name, t, start * cols, count * cols, out, 0);
    return tensor(out, [count, cols], 'float32') as Tensor2D;
  }

  /** Rows `ids` of a 2-D float or quantised tensor (an embedding lookup), as float32 `[ids.length, cols]`. */
  gatherRows(name: string, ids: ArrayLike<number>): Tensor2D {
    const { t, rows, cols } = this.floatMatrix(name, 'gatherRows');
    const out = new Float32Array(ids.length * cols);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= rows) throw new Error(`LazyWeights.gatherRows: row ${id} is outside ${tensorLabel(name)}'s ${rows} rows`);
      this.decodeInto(name, t, id * cols, cols, out, i * cols);
    }
    return tensor(out, [ids.length, cols], 'float32') as Tensor2D;
  }
}

/** Whether `x` is a {@link LazyWeights} store (works across copies of this module). */
export function isLazyWeights(x: unknown): x is LazyWeights {
  return x instanceof LazyWeights || (typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[BRAND] === true);
}
