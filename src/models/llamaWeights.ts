/**
 * Weight residency for models too large for float32: {@link LazyWeights} keeps each tensor's
 * checkpoint bytes (bf16, f16 or f32) and decodes float32 tfjs tensors from them only when a
 * forward pass needs them — a whole matrix, a block of rows, or a few gathered rows.
 *
 * Why: tfjs has no bf16. LLaMA-3-8B is 8.03 B parameters: 16.1 GB as bf16, 32.1 GB as float32.
 * On a 24 GB machine only the bf16 bytes fit; the largest matrix decoded at a time (an MLP
 * projection, 14336 × 4096) is 235 MB of float32, the embedding rows of a prompt a few MB.
 *
 * {@link loadSafetensorsRaw} fills a store from disk (Node only; single files, directories,
 * sharded Hugging Face checkpoints) with positioned reads of only the selected tensors;
 * {@link LazyWeights.fromSafetensors} wraps a file already in memory (any runtime, no copy).
 *
 * `node:fs/promises` and `node:path` are imported lazily, on the first Node call.
 */
import { tensor, type Tensor, type Tensor2D } from '@tensorflow/tfjs-core';
import { SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE } from '../io/loadSafetensors.js';
import { isPlainObject, message, nodeModules, pathKind as kind, readExactly, shardPath, type FileHandle } from '../io/nodeFiles.js';

const BROWSER_HINT = 'use LazyWeights.fromSafetensors';
import {
  SAFETENSORS_DTYPE_BYTES,
  SAFETENSORS_MAX_HEADER_BYTES,
  decodeTensor,
  decodeTensorValues,
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  tensorLabel,
  type SafetensorsDtype,
  type SafetensorsEntry,
} from '../io/safetensors.js';

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


/**
 * Two WebAssembly SIMD kernels over bf16 bytes, hand-assembled (~400 bytes, no toolchain):
 *
 *   bf16(src, dst, n)                 float32 dst[i] = bf16 src[i] (n a multiple of 8):
 *     8 values per step, i32x4.extend_{low,high}_i16x8_u then i32x4.shl 16 (a bf16 is the
 *     upper half of a float32).
 *   gemv(w, x, y, rows, cols)         y[r] = Σ_c bf16 w[r, c] · x[c] (cols a multiple of 8):
 *     the same widening, then f32x4 mul/add into two accumulators, lanes summed at the end.
 *
 *   (func $bf16 (param $src i32) (param $dst i32) (param $n i32) (local $end i32)
 *     end = src + 2n; loop until src >= end:
 *       store dst      (shl (extend_low_u  (load src)) 16)
 *       store dst + 16 (shl (extend_high_u (load src)) 16); src += 16; dst += 32)
 *   (func $gemv (param $w $x $y $rows $cols i32) (local $r $c $wp i32) (local $acc0 $acc1 $v v128)
 *     wp = w; for r < rows: acc0 = acc1 = 0; for c < cols step 8:
 *       v = load wp; acc0 += (shl (extend_low_u v) 16) * load(x + 4c)
 *                    acc1 += (shl (extend_high_u v) 16) * load(x + 4c + 16); wp += 16
 *     y[r] = Σ lanes (acc0 + acc1))
 *
 * Measured on the project's 2-core machine: decoding 58.7 M values (one 14336 × 4096 matrix)
 * ~30 ms against ~105 ms for the JS loop (`u32[i] = u16[i] << 16`); gemv 0.11 ns per weight
 * in cache (~9 G multiply-adds/s on one core).
 */
function simdModuleBytes(): Uint8Array<ArrayBuffer> {
  const leb = (n: number): number[] => {
    const out: number[] = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
  const name = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
  const fn = (locals: number[], code: number[]) => {
    const body = [...locals, ...code];
    return [...leb(body.length), ...body];
  };
  const V128_ZERO = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
  const WIDEN_LO = [0xfd, 0xa9, 0x01, 0x41, 0x10, 0xfd, 0xab, 0x01]; // i32x4.extend_low_i16x8_u; i32x4.shl 16
  const WIDEN_HI = [0xfd, 0xaa, 0x01, 0x41, 0x10, 0xfd, 0xab, 0x01]; // i32x4.extend_high_i16x8_u; i32x4.shl 16
  const LOAD = (offset: number) => [0xfd, 0x00, 0x00, offset]; // v128.load align=0
  const STORE = (offset: number) => [0xfd, 0x0b, 0x00, offset]; // v128.store align=0
  const MUL_ADD = [0xfd, 0xe6, 0x01, 0xfd, 0xe4, 0x01]; // f32x4.mul; f32x4.add
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const addConst = (i: number, k: number) => [...get(i), 0x41, k, 0x6a, ...set(i)]; // local i += k (k < 64)
  // prettier-ignore
  const bf16 = fn([0x01, 0x01, 0x7f], [ // params src 0, dst 1, n 2; local end 3
    ...get(0), ...get(2), 0x41, 0x01, 0x74, 0x6a, ...set(3), // end = src + (n << 1)
    0x02, 0x40, 0x03, 0x40, // block, loop
    ...get(0), ...get(3), 0x4f, 0x0d, 0x01, // br_if 1 (src >= end)
    ...get(1), ...get(0), ...LOAD(0), ...WIDEN_LO, ...STORE(0),
    ...get(1), ...get(0), ...LOAD(0), ...WIDEN_HI, ...STORE(16),
    ...addConst(0, 16), ...addConst(1, 32),
    0x0c, 0x00, 0x0b, 0x0b, 0x0b, // br 0, end loop, end block, end func
  ]);
  // prettier-ignore
  const gemv = fn([0x02, 0x03, 0x7f, 0x03, 0x7b], [ // params w 0, x 1, y 2, rows 3, cols 4; locals r 5, c 6, wp 7 (i32), acc0 8, acc1 9, v 10 (v128)
    ...get(0), ...set(7), 0x41, 0x00, ...set(5),
    0x02, 0x40, 0x03, 0x40, // rows
    ...get(5), ...get(3), 0x4f, 0x0d, 0x01,
    ...V128_ZERO, ...set(8), ...V128_ZERO, ...set(9), 0x41, 0x00, ...set(6),
    0x02, 0x40, 0x03, 0x40, // cols, 8 per step
    ...get(6), ...get(4), 0x4f, 0x0d, 0x01,
    ...get(7), ...LOAD(0), ...set(10),
    ...get(8), ...get(10), ...WIDEN_LO, ...get(1), ...get(6), 0x41, 0x02, 0x74, 0x6a, ...LOAD(0), ...MUL_ADD, ...set(8),
    ...get(9), ...get(10), ...WIDEN_HI, ...get(1), ...get(6), 0x41, 0x02, 0x74, 0x6a, ...LOAD(16), ...MUL_ADD, ...set(9),
    ...addConst(7, 16), ...addConst(6, 8),
    0x0c, 0x00, 0x0b, 0x0b,
    ...get(8), ...get(9), 0xfd, 0xe4, 0x01, ...set(8), // acc0 += acc1
    ...get(2), ...get(5), 0x41, 0x02, 0x74, 0x6a, // &y[r]
    ...get(8), 0xfd, 0x1f, 0x00, ...get(8), 0xfd, 0x1f, 0x01, 0x92, ...get(8), 0xfd, 0x1f, 0x02, 0x92, ...get(8), 0xfd, 0x1f, 0x03, 0x92,
    0x38, 0x02, 0x00, // f32.store
    ...addConst(5, 1),
    0x0c, 0x00, 0x0b, 0x0b, 0x0b,
  ]);
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x02, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, 0x60, 0x05, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x00]), // types
    ...section(3, [0x02, 0x00, 0x01]), // bf16: type 0, gemv: type 1
    ...section(5, [0x01, 0x00, 0x01]), // memory, 1 page to start
    ...section(7, [0x03, ...name('mem'), 0x02, 0x00, ...name('bf16'), 0x00, 0x00, ...name('gemv'), 0x00, 0x01]),
    ...section(10, [0x02, ...bf16, ...gemv]),
  ]);
}

/** Values per SIMD call: 2 MB of bf16 in the module's memory. */
const SIMD_BLOCK = 1 << 20;
interface Simd {
  mem: WebAssembly.Memory;
  bf16: (src: number, dst: number, n: number) => void;
  gemv: (w: number, x: number, y: number, rows: number, cols: number) => void;
  /** The module's memory as bytes, grown to at least `bytes`. */
  heap(bytes: number): Uint8Array;
}
let simd: Simd | null | undefined;

function simdKernels(): Simd | null {
  if (simd !== undefined) return simd;
  simd = null;
  try {
    const bytes = simdModuleBytes();
    if (IS_LITTLE_ENDIAN && typeof WebAssembly === 'object' && WebAssembly.validate(bytes)) {
      const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes)); // small: sync compile is fine everywhere
      const mem = instance.exports.mem as WebAssembly.Memory;
      simd = {
        mem,
        bf16: instance.exports.bf16 as Simd['bf16'],
        gemv: instance.exports.gemv as Simd['gemv'],
        heap(n: number): Uint8Array {
          if (mem.buffer.byteLength < n) mem.grow(Math.ceil((n - mem.buffer.byteLength) / 65536));
          return new Uint8Array(mem.buffer);
        },
      };
    }
  } catch {
    simd = null; // no SIMD: JS loops / tfjs matMuls instead
  }
  return simd;
}

/**
 * bf16 → float32 for `n` values: a bf16 is the upper half of a float32, so each output word is
 * the input half-word shifted left by 16 (exact; NaN/inf preserved). WebAssembly SIMD where
 * available, else a JS loop.
 */
function bf16Into(bytes: Uint8Array, out: Float32Array, n: number): void {
  let done = 0;
  const s = simdKernels();
  if (s) {
    const heap = s.heap(6 * SIMD_BLOCK);
    while (n - done >= 8) {
      const m = Math.min(SIMD_BLOCK, (n - done) & ~7);
      heap.set(bytes.subarray(2 * done, 2 * (done + m)), 0);
      s.bf16(0, 2 * SIMD_BLOCK, m);
      out.set(new Float32Array(s.mem.buffer, 2 * SIMD_BLOCK, m), done);
      done += m;
    }
  }
  const dst = new Uint32Array(out.buffer, out.byteOffset, n);
  if (IS_LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) {
    const src = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    for (let i = done; i < n; i++) dst[i] = src[i]! << 16;
  } else {
    for (let i = done; i < n; i++) dst[i] = (bytes[2 * i]! << 16) | (bytes[2 * i + 1]! << 24);
  }
}

/**
 * Use (true, the default) or bypass (false) the WebAssembly SIMD bf16 decoder, for tests and
 * benchmarks. Returns whether the SIMD decoder is now in use (false where WebAssembly SIMD is missing).
 */
export function setBf16Simd(enabled: boolean): boolean {
  simd = enabled ? undefined : null;
  return simdKernels() != null;
}

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
  private readonly map = new Map<string, LazyTensor>();

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

  has(name: string): boolean {
    return this.map.has(name);
  }

  /** Tensor names, in insertion order. */
  names(): string[] {
    return [...this.map.keys()];
  }

  /** The entry of `name` (dtype, shape, bytes), or undefined. */
  get(name: string): LazyTensor | undefined {
    return this.map.get(name);
  }

  /** Total bytes held. */
  get byteLength(): number {
    let n = 0;
    for (const t of this.map.values()) n += t.bytes.length;
    return n;
  }

  delete(name: string): boolean {
    return this.map.delete(name);
  }

  /** Drops every tensor's bytes. */
  dispose(): void {
    this.map.clear();
  }

  private entry(name: string, fn: string): LazyTensor {
    const t = this.map.get(name);
    if (!t) throw new Error(`LazyWeights.${fn}: no ${tensorLabel(name)} in the store`);
    return t;
  }

  private floatMatrix(name: string, fn: string): { t: LazyTensor; rows: number; cols: number } {
    const t = this.entry(name, fn);
    if (!FLOAT_DTYPES.has(t.dtype) || t.shape.length !== 2) {
      throw new Error(`LazyWeights.${fn}: ${tensorLabel(name)} must be a 2-D F32/F16/BF16 tensor, got ${t.dtype} ${JSON.stringify(t.shape)}`);
    }
    return { t, rows: t.shape[0]!, cols: t.shape[1]! };
  }

  /** Decodes `count` values of `t` starting at element `start` into `out` at `outOffset`. */
  private decodeInto(name: string, t: LazyTensor, start: number, count: number, out: Float32Array, outOffset: number): void {
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
   * `x · Wᵀ` computed directly on the bf16 bytes of a 2-D BF16 tensor `W` `[out, in]` (WebAssembly
   * SIMD, float32 accumulation; no float32 copy of `W` is made): `x` holds `m` rows of `in`
   * float32 values, the result `m` rows of `out`. For a few rows (a decode step) this reads each
   * weight once at memory speed, instead of decoding it, copying it into the backend and
   * multiplying. Returns undefined where it does not apply (not BF16, `in` not a multiple of 8,
   * no WebAssembly SIMD): then decode and matMul instead.
   */
  matMulTransposed(name: string, x: Float32Array, m: number): Float32Array | undefined {
    const { t, rows, cols } = this.floatMatrix(name, 'matMulTransposed');
    const s = simdKernels();
    if (!s || t.dtype !== 'BF16' || cols % 8 !== 0) return undefined;
    if (!Number.isInteger(m) || m < 1 || x.length !== m * cols) {
      throw new Error(`LazyWeights.matMulTransposed: x must hold m × ${cols} values for ${tensorLabel(name)}, got ${x.length} for m = ${m}`);
    }
    const blockRows = Math.max(1, Math.floor(SIMD_BLOCK / cols));
    const xOff = 2 * blockRows * cols; // a multiple of 16
    const yOff = xOff + 4 * m * cols;
    let heap = s.heap(yOff + 4 * m * blockRows);
    new Float32Array(heap.buffer, xOff, m * cols).set(x);
    const out = new Float32Array(m * rows);
    for (let r0 = 0; r0 < rows; r0 += blockRows) {
      const n = Math.min(blockRows, rows - r0);
      heap = new Uint8Array(s.mem.buffer);
      heap.set(t.bytes.subarray(2 * r0 * cols, 2 * (r0 + n) * cols), 0);
      for (let i = 0; i < m; i++) s.gemv(0, xOff + 4 * i * cols, yOff + 4 * i * n, n, cols);
      for (let i = 0; i < m; i++) out.set(new Float32Array(s.mem.buffer, yOff + 4 * i * n, n), i * rows + r0);
    }
    return out;
  }

  /**
   * The whole tensor as a new tfjs tensor: F32/F16/BF16 → float32 (exact); other dtypes as
   * `readSafetensors` maps them.
   */
  materialize(name: string): Tensor {
    const t = this.entry(name, 'materialize');
    if (!FLOAT_DTYPES.has(t.dtype)) {
      const entry: SafetensorsEntry = { name, dtype: t.dtype, shape: [...t.shape], begin: 0, end: t.bytes.length };
      return decodeTensor(entry, t.bytes, 'LazyWeights.materialize');
    }
    const n = t.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    this.decodeInto(name, t, 0, n, out, 0);
    return tensor(out, [...t.shape], 'float32');
  }

  /** Rows `[start, start + count)` of a 2-D float tensor, as float32 `[count, cols]`. */
  rows(name: string, start: number, count: number): Tensor2D {
    const { t, rows, cols } = this.floatMatrix(name, 'rows');
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > rows) {
      throw new Error(`LazyWeights.rows: rows [${start}, ${start + count}) are outside ${tensorLabel(name)}'s ${rows} rows`);
    }
    const out = new Float32Array(count * cols);
    this.decodeInto(name, t, start * cols, count * cols, out, 0);
    return tensor(out, [count, cols], 'float32') as Tensor2D;
  }

  /** Rows `ids` of a 2-D float tensor (an embedding lookup), as float32 `[ids.length, cols]`. */
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

// ---------------------------------------------------------------------------------------
// Node: reading checkpoints from disk



/** A tensor's location in a checkpoint: its file and validated header entry. */
export interface CheckpointEntry {
  file: string;
  entry: SafetensorsEntry;
  /** Absolute offset of the file's data section. */
  dataOffset: number;
}

async function readHeader(file: string, fn: string): Promise<{ entries: SafetensorsEntry[]; dataOffset: number; metadata: Record<string, string> }> {
  const ctx = `${fn}: ${file}`;
  const { fs } = await nodeModules(fn, BROWSER_HINT);
  let fh: FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (e) {
    throw new Error(`${fn}: cannot open ${file}: ${message(e)}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(`${ctx}: not a regular file`);
    const first = await readExactly(fh, Math.min(8, st.size), 0, ctx);
    const n = readSafetensorsHeaderLength(first, st.size, ctx);
    const h = parseSafetensorsHeader(await readExactly(fh, n, 8, ctx), st.size, ctx);
    return { entries: h.entries, dataOffset: h.dataOffset, metadata: h.metadata };
  } finally {
    await fh.close().catch(() => undefined);
  }
}


/**
 * Every tensor of a checkpoint with its dtype, shape and location, from the headers only (no
 * tensor data is read). `path`: a `.safetensors` file, or a directory holding
 * `model.safetensors.index.json` (sharded) or `model.safetensors`. For a sharded checkpoint
 * only the tensors the index assigns to a shard are listed from it; one missing there is an error.
 */
export async function listSafetensorsEntries(path: string): Promise<{ entries: Map<string, CheckpointEntry>; metadata: Record<string, string> }> {
  const fn = 'listSafetensorsEntries';
  if (typeof path !== 'string' || path === '') throw new Error(`${fn}: path must be a non-empty string, got ${JSON.stringify(path)}`);
  const { fs, path: nodePath } = await nodeModules(fn, BROWSER_HINT);
  const entries = new Map<string, CheckpointEntry>();
  const addFile = async (file: string, names?: Set<string>) => {
    const h = await readHeader(file, fn);
    const present = new Set<string>();
    for (const e of h.entries) {
      present.add(e.name);
      if (!names || names.has(e.name)) entries.set(e.name, { file, entry: e, dataOffset: h.dataOffset });
    }
    if (names) for (const n of names) if (!present.has(n)) throw new Error(`${fn}: ${file}: ${tensorLabel(n)} is listed in ${SAFETENSORS_INDEX_FILE} but missing from this shard`);
    return h.metadata;
  };
  const k = await kind(path);
  if (k === 'file') return { entries, metadata: await addFile(path) };
  if (k === 'none') throw new Error(`${fn}: ${path} is neither a file nor a directory`);
  const dir = nodePath.resolve(path);
  const index = nodePath.join(dir, SAFETENSORS_INDEX_FILE);
  if ((await kind(index)) === 'none') {
    const single = nodePath.join(dir, SAFETENSORS_SINGLE_FILE);
    if ((await kind(single)) === 'none') throw new Error(`${fn}: ${path} holds neither ${SAFETENSORS_INDEX_FILE} nor ${SAFETENSORS_SINGLE_FILE}`);
    return { entries, metadata: await addFile(single) };
  }
  let json: unknown;
  try {
    const st = await fs.stat(index);
    if (st.size > SAFETENSORS_MAX_HEADER_BYTES) throw new Error(`is ${st.size} bytes, over the limit of ${SAFETENSORS_MAX_HEADER_BYTES}`);
    json = JSON.parse(await fs.readFile(index, 'utf8'));
  } catch (e) {
    throw new Error(`${fn}: cannot read ${index}: ${message(e)}`);
  }
  const map = isPlainObject(json) ? json.weight_map : undefined;
  if (!isPlainObject(map)) throw new Error(`${fn}: ${index}: "weight_map" must be an object of tensor name -> shard file`);
  const shards = new Map<string, Set<string>>();
  for (const name of Object.keys(map)) {
    const shard = map[name];
    if (typeof shard !== 'string') throw new Error(`${fn}: ${index}: weight_map ${tensorLabel(name)}: shard must be a string`);
    const file = shardPath(dir, shard, index, fn);
    let names = shards.get(file);
    if (!names) shards.set(file, (names = new Set()));
    names.add(name);
  }
  for (const [file, names] of shards) await addFile(file, names);
  const metadata: Record<string, string> = Object.create(null);
  const m = isPlainObject(json) ? json.metadata : undefined;
  if (isPlainObject(m)) for (const key of Object.keys(m)) metadata[key] = typeof m[key] === 'string' ? (m[key] as string) : JSON.stringify(m[key]);
  return { entries, metadata };
}

/** Options of {@link loadSafetensorsRaw}. */
export interface LoadSafetensorsRawOptions {
  /** Keep only tensors whose names start with this prefix (or one of these). */
  prefix?: string | readonly string[];
  /** Keep only tensors this accepts (applied with `prefix`). */
  filter?: (name: string) => boolean;
}

/**
 * Reads the raw bytes of a checkpoint's tensors into a {@link LazyWeights} store (Node only):
 * headers first (validated as `readSafetensors` does), then only the selected tensors' byte
 * ranges, with positioned reads, each into its own buffer. Nothing is decoded: a bf16
 * checkpoint costs its file size in memory, not twice that.
 */
export async function loadSafetensorsRaw(path: string, opts: LoadSafetensorsRawOptions = {}): Promise<{ weights: LazyWeights; metadata: Record<string, string> }> {
  const fn = 'loadSafetensorsRaw';
  const prefixes = opts.prefix === undefined ? undefined : typeof opts.prefix === 'string' ? [opts.prefix] : [...opts.prefix];
  const want = (name: string) => (!prefixes || prefixes.some((p) => name.startsWith(p))) && (!opts.filter || opts.filter(name));
  const { entries, metadata } = await listSafetensorsEntries(path);
  const { fs } = await nodeModules(fn, BROWSER_HINT);
  const byFile = new Map<string, CheckpointEntry[]>();
  for (const [name, ce] of entries) {
    if (!want(name)) continue;
    let list = byFile.get(ce.file);
    if (!list) byFile.set(ce.file, (list = []));
    list.push(ce);
  }
  const weights = new LazyWeights();
  for (const [file, list] of byFile) {
    const ctx = `${fn}: ${file}`;
    let fh: FileHandle;
    try {
      fh = await fs.open(file, 'r');
    } catch (e) {
      throw new Error(`${fn}: cannot open ${file}: ${message(e)}`);
    }
    try {
      list.sort((a, b) => a.entry.begin - b.entry.begin);
      for (const { entry: e, dataOffset } of list) {
        const bytes = await readExactly(fh, e.end - e.begin, dataOffset + e.begin, ctx);
        weights.set(e.name, { dtype: e.dtype, shape: e.shape, bytes });
      }
    } finally {
      await fh.close().catch(() => undefined);
    }
  }
  return { weights, metadata };
}
