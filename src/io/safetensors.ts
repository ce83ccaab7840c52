/**
 * The safetensors format (https://github.com/huggingface/safetensors), in and out, for any
 * JS runtime: this module uses only `Uint8Array`, `DataView` and `TextDecoder`, no Node API.
 *
 * Layout: 8 bytes little-endian u64 `N`, then `N` bytes of UTF-8 JSON (the header), then the
 * data section. The header maps each tensor name to `{ dtype, shape, data_offsets: [begin, end] }`
 * (byte offsets relative to the start of the data section) and may hold `"__metadata__"`, a
 * map of strings to strings.
 *
 * The reader is meant to be pointed at untrusted files: the whole header is validated before
 * any tensor is made, every error names the tensor and the problem, and a failed read leaves
 * no tensor allocated.
 */
import { isPlainObject, showJson } from '../util/format.js';
import { tensor, Tensor, type DataType } from '@tensorflow/tfjs-core';

/** Largest header accepted, in bytes (the reference implementation's `MAX_HEADER_SIZE`). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

/** The safetensors dtypes this library reads. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'BOOL' | 'U8';

/** Bytes per element of each readable dtype. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  BOOL: 1,
  U8: 1,
});

/** The tfjs dtype each safetensors dtype is decoded to. */
export const SAFETENSORS_TFJS_DTYPE: Readonly<Record<SafetensorsDtype, DataType>> = Object.freeze({
  F32: 'float32',
  F16: 'float32',
  BF16: 'float32',
  I32: 'int32',
  I64: 'int32',
  BOOL: 'bool',
  U8: 'int32',
});

/** One validated header entry. Offsets are relative to the start of the data section. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: number[];
  /** First byte, relative to the data section. */
  readonly begin: number;
  /** One past the last byte, relative to the data section; `end - begin` is the byte length. */
  readonly end: number;
}

/** A validated header. */
export interface SafetensorsHeader {
  /** Tensors in header order (`JSON.parse` key order). */
  entries: SafetensorsEntry[];
  /** `__metadata__` (a null-prototype object; empty when absent). */
  metadata: Record<string, string>;
  /** `N`, the header's byte length. */
  headerLength: number;
  /** Absolute offset of the data section in the file: `8 + N`. */
  dataOffset: number;
  /** Byte length of the data section: `fileSize - 8 - N`. */
  dataLength: number;
}

/** What a read returns. Both records are null-prototype objects. */
export interface SafetensorsContents {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

const SUPPORTED = Object.keys(SAFETENSORS_DTYPE_BYTES).join(', ');
const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const MAX_SHOWN = 120;

/** JSON rendering of a value for an error message, bounded in length (hostile headers). */
const show = (v: unknown): string => showJson(v, MAX_SHOWN);

/** `tensor "name"` for error messages, the name bounded in length. */
export function tensorLabel(name: string): string {
  return `tensor ${show(name)}`;
}

function isDtype(v: unknown): v is SafetensorsDtype {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPE_BYTES, v);
}

/**
 * Reads and bounds the header length `N` from the first 8 bytes of a file of `fileSize` bytes.
 * @param first8 The file's first bytes (at least 8, or the whole file when shorter).
 * @param fileSize Total size of the file in bytes.
 * @param ctx Prefix of error messages (`'readSafetensors'`, or `'loadSafetensors: <path>'`).
 * @returns `N`, with `N ≤ SAFETENSORS_MAX_HEADER_BYTES` and `8 + N ≤ fileSize`.
 */
export function readSafetensorsHeaderLength(first8: Uint8Array, fileSize: number, ctx = 'readSafetensors'): number {
  if (fileSize < 8 || first8.length < 8) {
    throw new Error(`${ctx}: file is ${fileSize} bytes, too short for the 8-byte header length (truncated file?)`);
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    throw new Error(`${ctx}: header length ${n} exceeds the limit of ${SAFETENSORS_MAX_HEADER_BYTES} bytes`);
  }
  if (n > BigInt(fileSize - 8)) {
    throw new Error(`${ctx}: header length ${n} exceeds the ${fileSize - 8} bytes after the length field (truncated file?)`);
  }
  return Number(n);
}

function validateEntry(name: string, raw: unknown, dataLength: number, ctx: string): SafetensorsEntry {
  const at = `${ctx}: ${tensorLabel(name)}`;
  if (!isPlainObject(raw)) throw new Error(`${at}: entry must be an object {dtype, shape, data_offsets}, got ${show(raw)}`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string') throw new Error(`${at}: dtype must be a string, got ${show(dtype)}`);
  if (!isDtype(dtype)) throw new Error(`${at}: unsupported dtype ${show(dtype)} (supported: ${SUPPORTED})`);
  if (!Array.isArray(shape)) throw new Error(`${at}: shape must be an array of non-negative integers, got ${show(shape)}`);
  const dims: number[] = [];
  let elements = 1n;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new Error(`${at}: shape must be an array of non-negative integers, got ${show(shape)}`);
    }
    dims.push(d + 0); // -0 -> 0
    elements *= BigInt(d);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    throw new Error(`${at}: data_offsets must be [begin, end], got ${show(offsets)}`);
  }
  const [begin, end] = offsets as [unknown, unknown];
  if (typeof begin !== 'number' || typeof end !== 'number' || !Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || end < 0) {
    throw new Error(`${at}: data_offsets must be two non-negative integers, got ${show(offsets)}`);
  }
  if (begin > end) throw new Error(`${at}: data_offsets ${show(offsets)} has begin > end`);
  if (end > dataLength) {
    throw new Error(`${at}: data_offsets ${show(offsets)} out of range: the data section has ${dataLength} bytes (truncated file?)`);
  }
  const expected = elements * BigInt(SAFETENSORS_DTYPE_BYTES[dtype]);
  if (expected !== BigInt(end - begin)) {
    throw new Error(
      `${at}: byte length ${end - begin} (data_offsets ${show(offsets)}) does not match shape ${show(shape)} × ${SAFETENSORS_DTYPE_BYTES[dtype]} bytes of ${dtype} = ${expected}`,
    );
  }
  return { name, dtype, shape: dims, begin: begin + 0, end: end + 0 };
}

function validateMetadata(raw: unknown, ctx: string): Record<string, string> {
  if (!isPlainObject(raw)) throw new Error(`${ctx}: __metadata__ must be an object of strings, got ${show(raw)}`);
  const out: Record<string, string> = Object.create(null);
  for (const key of Object.keys(raw)) {
    const v = raw[key];
    if (typeof v !== 'string') throw new Error(`${ctx}: __metadata__ ${show(key)} must be a string, got ${show(v)}`);
    out[key] = v;
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses and validates a header: valid UTF-8, a JSON object, every entry well-formed (a
 * supported dtype, a shape of non-negative integers, `data_offsets` `[begin, end]` inside the
 * data section with `end - begin = product(shape) × dtype size`), no two tensors overlapping,
 * `__metadata__` (if present) mapping strings to strings. Every other top-level key is a
 * tensor, names like `__proto__` included. Gaps between tensors and trailing bytes are allowed.
 * Duplicate JSON keys: the last one wins (as `JSON.parse`).
 * @param headerBytes The `N` header bytes (after the 8-byte length).
 * @param fileSize Total size of the file in bytes (bounds the data section).
 * @param ctx Prefix of error messages.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileSize: number, ctx = 'readSafetensors'): SafetensorsHeader {
  const headerLength = headerBytes.length;
  if (headerLength > SAFETENSORS_MAX_HEADER_BYTES) {
    throw new Error(`${ctx}: header length ${headerLength} exceeds the limit of ${SAFETENSORS_MAX_HEADER_BYTES} bytes`);
  }
  if (!Number.isSafeInteger(fileSize) || 8 + headerLength > fileSize) {
    throw new Error(`${ctx}: header length ${headerLength} exceeds the ${fileSize - 8} bytes after the length field (truncated file?)`);
  }
  const dataOffset = 8 + headerLength;
  const dataLength = fileSize - dataOffset;
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new Error(`${ctx}: header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${ctx}: header is not valid JSON: ${show(e instanceof Error ? e.message : e)}`);
  }
  if (!isPlainObject(json)) throw new Error(`${ctx}: header must be a JSON object, got ${show(json)}`);

  let metadata: Record<string, string> = Object.create(null);
  const entries: SafetensorsEntry[] = [];
  // JSON.parse defines "__proto__" as an own property, so Object.keys sees every name.
  for (const name of Object.keys(json)) {
    if (name === '__metadata__') metadata = validateMetadata(json[name], ctx);
    else entries.push(validateEntry(name, json[name], dataLength, ctx));
  }
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: SafetensorsEntry | undefined;
  for (const e of byOffset) {
    if (prev && e.begin < prev.end) {
      throw new Error(
        `${ctx}: ${tensorLabel(e.name)}: data_offsets [${e.begin}, ${e.end}] overlap ${tensorLabel(prev.name)} at [${prev.begin}, ${prev.end}]`,
      );
    }
    if (!prev || e.end >= prev.end) prev = e;
  }
  return { entries, metadata, headerLength, dataOffset, dataLength };
}

/** Copies `bytes` into a fresh, aligned buffer (no misaligned typed-array views). */
function aligned(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy.buffer;
}

let halfTable: Uint32Array | undefined;
/** float32 bit patterns of all 65536 half floats (exact: subnormals, ±0, ±inf, NaN payloads). */
function halfToFloatBits(): Uint32Array {
  if (halfTable) return halfTable;
  const t = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    let mant = h & 0x3ff;
    let bits: number;
    if (exp === 0) {
      if (mant === 0) {
        bits = sign;
      } else {
        // Subnormal: value = mant × 2^-24; normalise the mantissa.
        let e = 113; // 127 - 15 + 1
        while ((mant & 0x400) === 0) {
          mant <<= 1;
          e--;
        }
        bits = sign | (e << 23) | ((mant & 0x3ff) << 13);
      }
    } else if (exp === 31) {
      bits = sign | 0x7f800000 | (mant << 13);
    } else {
      bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    t[h] = bits >>> 0;
  }
  halfTable = t;
  return t;
}

/** Decoded values of one tensor, ready for `tf.tensor(values, shape, dtype)`. */
export interface DecodedTensor {
  values: Float32Array | Int32Array | Uint8Array;
  shape: number[];
  dtype: DataType;
}

/**
 * Decodes one tensor's bytes without allocating a tfjs tensor (so it may throw freely).
 * F32 / F16 / BF16 become float32 exactly (BF16 is the upper half of a float32; F16 is decoded
 * with subnormals, ±inf and NaN); I32 int32; I64 int32, every value range-checked; BOOL tfjs
 * `'bool'` (any non-zero byte is true); U8 int32 (tfjs has no uint8 dtype).
 * @param entry A validated entry.
 * @param bytes Exactly the tensor's `entry.end - entry.begin` bytes (any alignment).
 * @param ctx Prefix of error messages.
 */
export function decodeTensorValues(entry: SafetensorsEntry, bytes: Uint8Array, ctx = 'readSafetensors'): DecodedTensor {
  const at = `${ctx}: ${tensorLabel(entry.name)}`;
  const size = SAFETENSORS_DTYPE_BYTES[entry.dtype];
  if (bytes.length !== entry.end - entry.begin) {
    throw new Error(`${at}: got ${bytes.length} bytes, expected ${entry.end - entry.begin}`);
  }
  const n = bytes.length / size;
  const dtype = SAFETENSORS_TFJS_DTYPE[entry.dtype];
  const shape = [...entry.shape];
  switch (entry.dtype) {
    case 'F32':
    case 'I32': {
      const Ctor = entry.dtype === 'F32' ? Float32Array : Int32Array;
      if (IS_LITTLE_ENDIAN) return { values: new Ctor(aligned(bytes)), shape, dtype };
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const out = new Ctor(n);
      for (let i = 0; i < n; i++) out[i] = entry.dtype === 'F32' ? dv.getFloat32(4 * i, true) : dv.getInt32(4 * i, true);
      return { values: out, shape, dtype };
    }
    case 'F16':
    case 'BF16': {
      const bits = new Uint32Array(n);
      if (entry.dtype === 'F16') {
        const table = halfToFloatBits();
        for (let i = 0; i < n; i++) bits[i] = table[bytes[2 * i]! | (bytes[2 * i + 1]! << 8)]!;
      } else {
        for (let i = 0; i < n; i++) bits[i] = (bytes[2 * i]! << 16) | (bytes[2 * i + 1]! << 24);
      }
      return { values: new Float32Array(bits.buffer), shape, dtype };
    }
    case 'I64': {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = dv.getInt32(8 * i, true);
        const hi = dv.getInt32(8 * i + 4, true);
        if (hi !== lo >> 31) {
          throw new Error(`${at}: I64 value ${dv.getBigInt64(8 * i, true)} at element ${i} is outside the int32 range`);
        }
        out[i] = lo;
      }
      return { values: out, shape, dtype };
    }
    case 'BOOL': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes[i] === 0 ? 0 : 1;
      return { values: out, shape, dtype };
    }
    case 'U8':
      return { values: Int32Array.from(bytes), shape, dtype };
  }
}

/** Makes the tfjs tensor for decoded values, reporting a tfjs failure under `ctx`. */
export function tensorFromDecoded(name: string, d: DecodedTensor, ctx = 'readSafetensors'): Tensor {
  try {
    return tensor(d.values, d.shape, d.dtype);
  } catch (e) {
    throw new Error(`${ctx}: ${tensorLabel(name)}: could not create the tensor: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * Decodes one tensor's bytes into a tfjs tensor: F32 / F16 / BF16 → float32 (exact), I32 →
 * int32, I64 → int32 (range-checked), BOOL → bool, U8 → int32. On error no tensor is allocated.
 * @param entry A validated entry (from {@link parseSafetensorsHeader}).
 * @param bytes Exactly the tensor's `entry.end - entry.begin` bytes.
 */
export function decodeTensor(entry: SafetensorsEntry, bytes: Uint8Array, ctx = 'readSafetensors'): Tensor {
  return tensorFromDecoded(entry.name, decodeTensorValues(entry, bytes, ctx), ctx);
}

/**
 * Reads a whole safetensors file held in memory.
 *
 * Dtypes: F32, F16, BF16 → `float32` (exact); I32 → `int32`; I64 → `int32` (a value outside
 * the int32 range is an error naming the tensor); BOOL → `bool`; U8 → `int32` (tfjs has no
 * uint8). Any other dtype is an error naming the tensor and the dtype.
 *
 * The header is validated in full before any tensor is made (see
 * {@link parseSafetensorsHeader}); if anything fails, every tensor made so far is disposed and
 * the error (message starting `readSafetensors:`, naming the tensor and the problem) is thrown.
 * @param bytes The file's bytes (a `Uint8Array`, or a Node `Buffer`).
 * @returns The tensors by name and the `__metadata__` strings (null-prototype objects).
 */
export function readSafetensors(bytes: Uint8Array): SafetensorsContents {
  const ctx = 'readSafetensors';
  if (!(bytes instanceof Uint8Array)) throw new Error(`${ctx}: bytes must be a Uint8Array, got ${show(Object.prototype.toString.call(bytes))}`);
  const n = readSafetensorsHeaderLength(bytes.subarray(0, 8), bytes.length, ctx);
  const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length, ctx);
  const data = bytes.subarray(header.dataOffset);
  const tensors: Record<string, Tensor> = Object.create(null);
  const made: Tensor[] = [];
  try {
    for (const e of header.entries) {
      const t = decodeTensor(e, data.subarray(e.begin, e.end), ctx);
      made.push(t);
      tensors[e.name] = t;
    }
  } catch (err) {
    for (const t of made) t.dispose();
    throw err;
  }
  return { tensors, metadata: header.metadata };
}

const SAVE_DTYPES: Partial<Record<DataType, SafetensorsDtype>> = { float32: 'F32', int32: 'I32', bool: 'BOOL' };

function isTensor(x: unknown): x is Tensor {
  // `instanceof` fails when two copies of tfjs-core are loaded; duck-type as tfjs does.
  return x instanceof Tensor || (x != null && typeof x === 'object' && 'dataId' in x && 'shape' in x && 'dtype' in x);
}

/**
 * Serialises tensors (and optional string metadata) to safetensors bytes: float32 → F32,
 * int32 → I32, bool → BOOL. Tensors are written contiguously in sorted-name order (UTF-16
 * code-unit order); the header is padded with spaces to a multiple of 8 bytes, as the
 * reference implementation does. Round-trips exactly through {@link readSafetensors}.
 *
 * Reads values with `dataSync()`, so the active backend must support synchronous reads
 * (cpu, wasm, tensorflow; in Node not webgpu: there, read with `await t.data()` and rebuild the
 * tensors on cpu first). The inputs are not disposed.
 * @param tensors Tensors by name (any name but `__metadata__`).
 * @param metadata String values stored under `__metadata__`.
 */
export function saveSafetensors(tensors: Record<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  const ctx = 'saveSafetensors';
  if (!isPlainObject(tensors)) throw new Error(`${ctx}: tensors must be an object of tensors by name, got ${show(tensors)}`);
  const parts: string[] = [];
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw new Error(`${ctx}: metadata must be an object of strings, got ${show(metadata)}`);
    const keys = Object.keys(metadata);
    for (const k of keys) {
      if (typeof metadata[k] !== 'string') throw new Error(`${ctx}: metadata ${show(k)} must be a string, got ${show(metadata[k])}`);
    }
    if (keys.length > 0) parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`);
  }
  const names = Object.keys(tensors).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const at = `${ctx}: ${tensorLabel(name)}`;
    if (name === '__metadata__') throw new Error(`${ctx}: "__metadata__" is reserved and cannot name a tensor`);
    const t = tensors[name];
    if (!isTensor(t)) throw new Error(`${at}: must be a tf.Tensor, got ${show(t)}`);
    if (t.isDisposed) throw new Error(`${at}: is a disposed tensor`);
    const dtype = SAVE_DTYPES[t.dtype];
    if (!dtype) throw new Error(`${at}: dtype ${t.dtype} is not supported (float32, int32, bool)`);
    const values = t.dataSync() as Float32Array | Int32Array | Uint8Array;
    const out = new Uint8Array(values.length * SAFETENSORS_DTYPE_BYTES[dtype]);
    if (dtype === 'BOOL') {
      for (let i = 0; i < values.length; i++) out[i] = values[i] ? 1 : 0;
    } else if (IS_LITTLE_ENDIAN) {
      out.set(new Uint8Array(values.buffer, values.byteOffset, out.length));
    } else {
      const dv = new DataView(out.buffer);
      for (let i = 0; i < values.length; i++) {
        if (dtype === 'F32') dv.setFloat32(4 * i, values[i]!, true);
        else dv.setInt32(4 * i, values[i]!, true);
      }
    }
    parts.push(`${JSON.stringify(name)}:{"dtype":"${dtype}","shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${offset + out.length}]}`);
    chunks.push(out);
    offset += out.length;
  }
  let header = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(header.length / 8) * 8;
  if (padded !== header.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(header);
    header = p;
  }
  if (header.length > SAFETENSORS_MAX_HEADER_BYTES) {
    throw new Error(`${ctx}: header would be ${header.length} bytes, over the limit of ${SAFETENSORS_MAX_HEADER_BYTES}`);
  }
  const file = new Uint8Array(8 + header.length + offset);
  new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
  file.set(header, 8);
  let pos = 8 + header.length;
  for (const c of chunks) {
    file.set(c, pos);
    pos += c.length;
  }
  return file;
}
