// safetensors I/O: the pure reader/writer (backend-independent, so cpu only), the official
// library's output (test/fixtures/safetensors, written by scripts/golden/make_safetensors_fixture.py),
// one test per validation error, and loadSafetensors on temp files (single, directory, sharded,
// prefix-filtered positioned reads, shard-escape rejection).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { mkdtemp, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadSafetensors } from '../src/io/loadSafetensors.js';
import {
  SAFETENSORS_MAX_HEADER_BYTES,
  decodeTensor,
  parseSafetensorsHeader,
  readSafetensors,
  saveSafetensors,
} from '../src/io/safetensors.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/safetensors/', import.meta.url));

let before = 0;
beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors, 'tensors leaked by this test').toBe(before);
});

/** Builds a file from a header (object or raw JSON text) and data bytes; `n` overrides the length field. */
function build(header: unknown, data: Uint8Array | number = 0, n?: bigint): Uint8Array {
  const h = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

const entry = (dtype: string, shape: unknown, begin: unknown, end: unknown) => ({ dtype, shape, data_offsets: [begin, end] });

function disposeAll(r: { tensors: Record<string, tf.Tensor> }): void {
  for (const t of Object.values(r.tensors)) t.dispose();
}

/** Asserts `op` throws an Error starting with `fn:` and matching `pattern`, leaving no tensor behind. */
function expectError(op: () => unknown, pattern: RegExp, fn = 'readSafetensors'): void {
  const n = tf.memory().numTensors;
  let err: unknown;
  try {
    const r = op() as { tensors: Record<string, tf.Tensor> };
    if (r && r.tensors) disposeAll(r);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(Error);
  const msg = (err as Error).message;
  expect(msg.startsWith(`${fn}:`), msg).toBe(true);
  expect(msg).toMatch(pattern);
  expect(tf.memory().numTensors, 'tensors left behind by a failed call').toBe(n);
}

async function expectLoadError(op: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  const n = tf.memory().numTensors;
  let err: unknown;
  try {
    const r = (await op()) as { tensors: Record<string, tf.Tensor> };
    disposeAll(r);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(Error);
  const msg = (err as Error).message;
  expect(msg.startsWith('loadSafetensors:'), msg).toBe(true);
  expect(msg).toMatch(pattern);
  expect(tf.memory().numTensors, 'tensors left behind by a failed call').toBe(n);
}

const bits = (a: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(a).buffer));
/** Bit patterns, every NaN as 'NaN' (payloads differ between converters: torch's f16 -> f32 gives 0x7fffffff). */
const bitsNaN = (a: ArrayLike<number>) => bits(a).map((b, i) => (Number.isNaN(a[i]) ? 'NaN' : b));

describe('saveSafetensors / readSafetensors round trip', () => {
  it('float32 (nan, ±0, ±inf, subnormal), int32 extremes, bool, scalar, empty: exact, with metadata', () => {
    const f = new Float32Array([1.5, -0, 0, Infinity, -Infinity, NaN, 1e-45, 3.4028234663852886e38, -1 / 3]);
    const src = {
      'b.float': tf.tensor(f, [3, 3]),
      'a.int': tf.tensor1d([-(2 ** 31), 2 ** 31 - 1, 0, -1, 7], 'int32'),
      'c.bool': tf.tensor2d([[true, false], [false, true]], [2, 2], 'bool'),
      scalar: tf.scalar(2.25),
      empty: tf.zeros([0, 4], 'int32'),
      'z.ünï✓': tf.tensor1d([1, 2]),
    };
    const bytes = saveSafetensors(src, { format: 'pt', 'kéy': 'välue "quoted"' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(headerText.trimEnd().length).toBeGreaterThan(0);
    expect(/^ *$/.test(headerText.slice(headerText.trimEnd().length))).toBe(true);
    // Sorted names, contiguous offsets, data section exactly covered.
    const header = JSON.parse(headerText);
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(names).toEqual(Object.keys(src).sort());
    let off = 0;
    for (const k of names) {
      expect(header[k].data_offsets[0]).toBe(off);
      off = header[k].data_offsets[1];
    }
    expect(8 + n + off).toBe(bytes.length);

    const r = readSafetensors(bytes);
    expect({ ...r.metadata }).toEqual({ format: 'pt', 'kéy': 'välue "quoted"' });
    expect(Object.keys(r.tensors).sort()).toEqual(Object.keys(src).sort());
    for (const [k, t] of Object.entries(src)) {
      const got = r.tensors[k]!;
      expect(got.dtype, k).toBe(t.dtype);
      expect(got.shape, k).toEqual(t.shape);
      if (t.dtype === 'float32') expect(bits(got.dataSync()), k).toEqual(bits(t.dataSync()));
      else expect(Array.from(got.dataSync()), k).toEqual(Array.from(t.dataSync()));
    }
    // Saving what was read gives the same bytes.
    expect(saveSafetensors(r.tensors, r.metadata)).toEqual(bytes);
    disposeAll(r);
    tf.dispose(Object.values(src));
  });

  it('no tensors and no metadata: a valid, padded, empty file', () => {
    const bytes = saveSafetensors({});
    expect(bytes.length).toBe(16);
    const r = readSafetensors(bytes);
    expect(Object.keys(r.tensors)).toEqual([]);
    expect(Object.keys(r.metadata)).toEqual([]);
  });

  it('__proto__, constructor, toString and hasOwnProperty are ordinary tensor names', () => {
    const src: Record<string, tf.Tensor> = Object.create(null);
    src['__proto__'] = tf.tensor1d([1, 2, 3]);
    src['constructor'] = tf.tensor1d([4], 'int32');
    src['toString'] = tf.scalar(5);
    src['hasOwnProperty'] = tf.tensor1d([true], 'bool');
    // saveSafetensors accepts a null-prototype record too.
    const r = readSafetensors(saveSafetensors(src));
    expect(Object.getPrototypeOf(r.tensors)).toBe(null);
    expect(Object.keys(r.tensors).sort()).toEqual(['__proto__', 'constructor', 'hasOwnProperty', 'toString']);
    expect(Array.from(r.tensors['__proto__']!.dataSync())).toEqual([1, 2, 3]);
    expect(Array.from(r.tensors['constructor']!.dataSync())).toEqual([4]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    disposeAll(r);
    tf.dispose(Object.values(src));

    // And in a hand-written header (JSON.parse defines "__proto__" as an own key).
    const h = `{"__proto__":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"__metadata__":{"__proto__":"x"}}`;
    const r2 = readSafetensors(build(h, new Uint8Array([7, 9])));
    expect(Array.from(r2.tensors['__proto__']!.dataSync())).toEqual([7, 9]);
    expect(r2.metadata['__proto__']).toBe('x');
    expect(Object.getPrototypeOf(r2.metadata)).toBe(null);
    disposeAll(r2);
  });

  it('unaligned offsets: every dtype at odd byte positions (bytes copied, no misaligned views)', () => {
    const dv = new DataView(new ArrayBuffer(64));
    let o = 0;
    const header: Record<string, unknown> = {};
    const put = (name: string, dtype: string, shape: number[], write: (at: number) => number) => {
      const len = write(o);
      header[name] = entry(dtype, shape, o, o + len);
      o += len;
    };
    put('pad', 'U8', [3], (at) => (dv.setUint8(at, 1), dv.setUint8(at + 1, 2), dv.setUint8(at + 2, 255), 3));
    put('f32', 'F32', [2], (at) => (dv.setFloat32(at, -1.25, true), dv.setFloat32(at + 4, 1e-40, true), 8));
    put('pad2', 'BOOL', [1], (at) => (dv.setUint8(at, 2), 1)); // any non-zero byte is true
    put('i32', 'I32', [2], (at) => (dv.setInt32(at, -123456, true), dv.setInt32(at + 4, 2 ** 31 - 1, true), 8));
    put('i64', 'I64', [2], (at) => (dv.setBigInt64(at, -(2n ** 31n), true), dv.setBigInt64(at + 8, 99n, true), 16));
    put('f16', 'F16', [1], (at) => (dv.setUint16(at, 0x3c00, true), 2));
    put('bf16', 'BF16', [1], (at) => (dv.setUint16(at, 0xc049, true), 2));
    const r = readSafetensors(build(header, new Uint8Array(dv.buffer, 0, o)));
    const v = (k: string) => Array.from(r.tensors[k]!.dataSync());
    expect(v('pad')).toEqual([1, 2, 255]);
    expect(r.tensors.pad!.dtype).toBe('int32');
    expect(v('f32')).toEqual([-1.25, Math.fround(1e-40)]);
    expect(v('pad2')).toEqual([1]);
    expect(r.tensors.pad2!.dtype).toBe('bool');
    expect(v('i32')).toEqual([-123456, 2 ** 31 - 1]);
    expect(v('i64')).toEqual([-(2 ** 31), 99]);
    expect(v('f16')).toEqual([1]);
    expect(v('bf16')).toEqual([-3.140625]);
    disposeAll(r);
  });

  it('F16: all 65536 bit patterns decode exactly (subnormals, ±0, ±inf, NaN)', () => {
    const data = new Uint8Array(2 * 65536);
    for (let h = 0; h < 65536; h++) {
      data[2 * h] = h & 0xff;
      data[2 * h + 1] = h >> 8;
    }
    const r = readSafetensors(build({ h: entry('F16', [65536], 0, data.length) }, data));
    const got = r.tensors.h!.dataSync();
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 31;
      const m = h & 1023;
      const want = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
      if (!Object.is(got[h], want)) expect.fail(`half 0x${h.toString(16)}: got ${got[h]}, want ${want}`);
    }
    disposeAll(r);
  });

  it('BF16: all 65536 bit patterns are the upper half of a float32', () => {
    const data = new Uint8Array(2 * 65536);
    for (let h = 0; h < 65536; h++) {
      data[2 * h] = h & 0xff;
      data[2 * h + 1] = h >> 8;
    }
    const r = readSafetensors(build({ h: entry('BF16', [256, 256], 0, data.length) }, data));
    const got = new Uint32Array(Float32Array.from(r.tensors.h!.dataSync()).buffer);
    for (let h = 0; h < 65536; h++) {
      const g = got[h]!;
      const want = (h << 16) >>> 0;
      // NaNs may be canonicalised on the way through a JS number; everything else is bit-exact.
      const isNaN = (v: number) => (v & 0x7f800000) === 0x7f800000 && (v & 0x7fffff) !== 0;
      if (g !== want && !(isNaN(g) && isNaN(want))) expect.fail(`bf16 0x${h.toString(16)}: got 0x${g.toString(16)}`);
    }
    disposeAll(r);
  });

  it('decodeTensor and parseSafetensorsHeader are usable on their own', () => {
    const file = build({ a: entry('I64', [2], 0, 16), __metadata__: { k: 'v' } }, new Uint8Array(16).fill(0).map((_, i) => (i === 0 ? 5 : 0)));
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    const h = parseSafetensorsHeader(file.subarray(8, 8 + n), file.length);
    expect(h.dataOffset).toBe(8 + n);
    expect(h.dataLength).toBe(16);
    expect(h.entries).toEqual([{ name: 'a', dtype: 'I64', shape: [2], begin: 0, end: 16 }]);
    expect({ ...h.metadata }).toEqual({ k: 'v' });
    const t = decodeTensor(h.entries[0]!, file.subarray(h.dataOffset));
    expect(t.dtype).toBe('int32');
    expect(Array.from(t.dataSync())).toEqual([5, 0]);
    t.dispose();
  });
});

describe('files written by the official safetensors library', () => {
  it('dtypes.safetensors: every dtype equals torch’s own conversion, bit for bit; metadata intact', async () => {
    const r = readSafetensors(await readFile(join(FIXTURES, 'dtypes.safetensors')));
    expect({ ...r.metadata }).toEqual({ format: 'pt', generator: 'make_safetensors_fixture.py', note: 'ünïcode ✓' });
    const t = r.tensors;
    const dtypes = { F32: 'float32', F16: 'float32', BF16: 'float32', I32: 'int32', I64: 'int32', BOOL: 'bool', U8: 'int32' } as const;
    for (const [st, tfDtype] of Object.entries(dtypes)) {
      const x = t[`x.${st}`]!;
      const want = t[`expected.${st}`]!;
      expect(x.dtype, st).toBe(tfDtype);
      expect(x.shape, st).toEqual(want.shape);
      if (tfDtype === 'float32') expect(bitsNaN(x.dataSync()), st).toEqual(bitsNaN(want.dataSync()));
      else expect(Array.from(x.dataSync()), st).toEqual(Array.from(want.dataSync()));
    }
    // Spot checks independent of torch's conversion.
    const f16 = t['x.F16']!.dataSync();
    expect(Object.is(f16[1], -0)).toBe(true);
    expect(f16[6]).toBe(2 ** -24); // smallest subnormal
    expect(f16[7]).toBe(2 ** -20);
    expect(f16[9]).toBe(Infinity);
    expect(f16[10]).toBe(-Infinity);
    expect(Number.isNaN(f16[11])).toBe(true);
    expect(f16[4]).toBe(65504);
    expect(Array.from(t['x.U8']!.dataSync())).toEqual([0, 1, 127, 128, 254, 255]);
    expect(Array.from(t['x.I64']!.dataSync())).toEqual([-(2 ** 31), 2 ** 31 - 1, 0, 5, -7, 123456789]);
    expect(t['x.scalar']!.shape).toEqual([]);
    expect(t['x.scalar']!.dataSync()[0]).toBe(3.5);
    expect(t['x.empty']!.shape).toEqual([0, 3]);
    expect(t['x.empty']!.dtype).toBe('float32');
    disposeAll(r);
  });

  it('i64_out_of_range.safetensors: an I64 value beyond int32 is an error naming the tensor', async () => {
    const bytes = await readFile(join(FIXTURES, 'i64_out_of_range.safetensors'));
    expectError(() => readSafetensors(bytes), /tensor "bad\.I64": I64 value 2147483648 at element 1 is outside the int32 range/);
  });

  it('a truncated copy of the fixture is rejected cleanly at every length', async () => {
    const bytes = await readFile(join(FIXTURES, 'dtypes.safetensors'));
    for (let len = 0; len < bytes.length; len += 7) {
      expectError(() => readSafetensors(bytes.subarray(0, len)), /truncated file|too short|out of range|header length/);
    }
  });
});

describe('readSafetensors errors', () => {
  const ok = { a: entry('F32', [2], 0, 8) };

  it('truncated file (shorter than the length field)', () => {
    expectError(() => readSafetensors(new Uint8Array(5)), /file is 5 bytes, too short for the 8-byte header length/);
  });

  it('header too long (over the limit)', () => {
    expectError(() => readSafetensors(build(ok, 8, BigInt(SAFETENSORS_MAX_HEADER_BYTES) + 1n)), /header length 100000001 exceeds the limit/);
    expectError(() => readSafetensors(build(ok, 8, 2n ** 64n - 1n)), /header length 18446744073709551615 exceeds the limit/);
  });

  it('header length beyond the file', () => {
    const f = build(ok, 8);
    expectError(() => readSafetensors(build(ok, 8, BigInt(f.length - 7))), /header length \d+ exceeds the \d+ bytes after the length field/);
  });

  it('header is not UTF-8 (and a BOM is not JSON whitespace)', () => {
    const f = build('{"a":1}');
    f[9] = 0xff;
    expectError(() => readSafetensors(f), /header is not valid UTF-8/);
    expectError(() => readSafetensors(build('\ufeff{}')), /header is not valid JSON/);
  });

  it('bad JSON', () => {
    expectError(() => readSafetensors(build('{"a": {"dtype": "F32",')), /header is not valid JSON/);
    expectError(() => readSafetensors(build('')), /header is not valid JSON/);
  });

  it('header is not an object', () => {
    for (const h of ['[]', 'null', '3', '"x"', 'true']) expectError(() => readSafetensors(build(h)), /header must be a JSON object/);
  });

  it('entry is not an object', () => {
    expectError(() => readSafetensors(build({ a: [1, 2] })), /tensor "a": entry must be an object/);
    expectError(() => readSafetensors(build({ a: null })), /tensor "a": entry must be an object/);
  });

  it('bad dtype: unsupported or not a string', () => {
    expectError(() => readSafetensors(build({ w: entry('F64', [1], 0, 8) }, 8)), /tensor "w": unsupported dtype "F64" \(supported: F32, F16, BF16, I32, I64, BOOL, U8\)/);
    expectError(() => readSafetensors(build({ w: entry('f32', [1], 0, 4) }, 4)), /tensor "w": unsupported dtype "f32"/);
    expectError(() => readSafetensors(build({ w: entry('__proto__', [1], 0, 4) }, 4)), /tensor "w": unsupported dtype "__proto__"/);
    expectError(() => readSafetensors(build({ w: { shape: [1], data_offsets: [0, 4] } }, 4)), /tensor "w": dtype must be a string/);
  });

  it('bad shape: negative, fractional, non-number, not an array, unsafe integer', () => {
    for (const shape of [[-1], [1.5], ['2'], [null], 4, null, [2 ** 53], [[2]]]) {
      expectError(() => readSafetensors(build({ w: entry('U8', shape, 0, 2) }, 2)), /tensor "w": shape must be an array of non-negative integers/);
    }
    expectError(() => readSafetensors(build('{"w":{"dtype":"U8","shape":[1e400],"data_offsets":[0,2]}}', 2)), /tensor "w": shape must be/);
  });

  it('data_offsets malformed or out of range', () => {
    const at = (o: unknown) => build({ w: { dtype: 'U8', shape: [2], data_offsets: o } }, 4);
    expectError(() => readSafetensors(at([0])), /tensor "w": data_offsets must be \[begin, end\]/);
    expectError(() => readSafetensors(at('0,2')), /tensor "w": data_offsets must be \[begin, end\]/);
    expectError(() => readSafetensors(at([-2, 0])), /tensor "w": data_offsets must be two non-negative integers/);
    expectError(() => readSafetensors(at([0.5, 2.5])), /tensor "w": data_offsets must be two non-negative integers/);
    expectError(() => readSafetensors(at([3, 1])), /tensor "w": data_offsets \[3,1\] has begin > end/);
    expectError(() => readSafetensors(at([3, 5])), /tensor "w": data_offsets \[3,5\] out of range: the data section has 4 bytes/);
    expectError(() => readSafetensors(at([2 ** 53, 2 ** 53])), /tensor "w": data_offsets must be two non-negative integers/);
  });

  it('byte length does not match shape × dtype size (overflow-safe)', () => {
    expectError(() => readSafetensors(build({ w: entry('F32', [3], 0, 8) }, 8)), /tensor "w": byte length 8 .* does not match shape \[3\] × 4 bytes of F32 = 12/);
    // 2^52 · 2^52 · 4 wraps to nothing in float arithmetic; BigInt keeps it honest.
    expectError(() => readSafetensors(build({ w: entry('F32', [2 ** 52, 2 ** 52, 0.5 * 2], 0, 8) }, 8)), /does not match shape/);
    expectError(() => readSafetensors(build({ w: entry('I64', [2 ** 40, 2 ** 40], 0, 0) }, 8)), /does not match shape/);
  });

  it('overlapping tensors (including an empty one inside another)', () => {
    expectError(() => readSafetensors(build({ a: entry('F32', [2], 0, 8), b: entry('F32', [1], 4, 8) }, 8)), /tensor "b": data_offsets \[4, 8\] overlap tensor "a" at \[0, 8\]/);
    expectError(() => readSafetensors(build({ a: entry('U8', [4], 0, 4), b: entry('U8', [4], 0, 4) }, 4)), /overlap/);
    expectError(() => readSafetensors(build({ a: entry('U8', [8], 0, 8), b: entry('U8', [1], 2, 3), c: entry('U8', [1], 7, 8) }, 8)), /overlap tensor "a"/);
    expectError(() => readSafetensors(build({ a: entry('U8', [8], 0, 8), e: entry('U8', [0], 3, 3) }, 8)), /tensor "e".*overlap/);
  });

  it('gaps and trailing bytes are allowed; empty tensors may share an offset', () => {
    const r = readSafetensors(build({ a: entry('U8', [1], 2, 3), e: entry('U8', [0], 3, 3), f: entry('F32', [0, 5], 3, 3) }, 10));
    expect(Object.keys(r.tensors).sort()).toEqual(['a', 'e', 'f']);
    disposeAll(r);
  });

  it('__metadata__ must be an object of strings', () => {
    expectError(() => readSafetensors(build({ __metadata__: { format: 1 } })), /__metadata__ "format" must be a string, got 1/);
    expectError(() => readSafetensors(build({ __metadata__: { a: 'x', b: { nested: 'y' } } })), /__metadata__ "b" must be a string/);
    expectError(() => readSafetensors(build({ __metadata__: ['x'] })), /__metadata__ must be an object of strings/);
    expectError(() => readSafetensors(build({ __metadata__: null })), /__metadata__ must be an object of strings/);
  });

  it('I64 out of int32 range (either side), after other tensors were made: nothing leaks', () => {
    const data = new Uint8Array(8 + 8 + 16);
    const dv = new DataView(data.buffer);
    dv.setFloat32(0, 1, true);
    dv.setBigInt64(16, 3n, true);
    dv.setBigInt64(24, -(2n ** 31n) - 1n, true);
    const f = build({ a: entry('F32', [2], 0, 8), b: entry('I32', [2], 8, 16), c: entry('I64', [2], 16, 32) }, data);
    expectError(() => readSafetensors(f), /tensor "c": I64 value -2147483649 at element 1 is outside the int32 range/);
  });

  it('long tensor names are shortened in messages', () => {
    const name = 'x'.repeat(10_000);
    let msg = '';
    try {
      readSafetensors(build({ [name]: entry('F64', [1], 0, 8) }, 8));
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/^readSafetensors: tensor "x+…\(10002 chars\): unsupported dtype/);
    expect(msg.length).toBeLessThan(400);
  });

  it('input must be a Uint8Array', () => {
    expectError(() => readSafetensors(new ArrayBuffer(16) as unknown as Uint8Array), /bytes must be a Uint8Array/);
  });
});

describe('saveSafetensors errors', () => {
  it('metadata values must be strings; __metadata__ is reserved; unsupported dtypes and disposed tensors', () => {
    const a = tf.tensor1d([1]);
    expectError(() => saveSafetensors({ a }, { n: 3 as unknown as string }), /metadata "n" must be a string, got 3/, 'saveSafetensors');
    expectError(() => saveSafetensors({ __metadata__: a }), /"__metadata__" is reserved/, 'saveSafetensors');
    const s = tf.tensor1d(['x'], 'string');
    expectError(() => saveSafetensors({ s }), /tensor "s": dtype string is not supported/, 'saveSafetensors');
    expectError(() => saveSafetensors({ n: [1, 2] as unknown as tf.Tensor }), /tensor "n": must be a tf.Tensor/, 'saveSafetensors');
    const d = tf.tensor1d([1]);
    d.dispose();
    expectError(() => saveSafetensors({ d }), /tensor "d": is a disposed tensor/, 'saveSafetensors');
    tf.dispose([a, s]);
  });
});

describe('loadSafetensors', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inf-llava-st-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Writes saveSafetensors output for plain arrays; returns the path. */
  async function writeST(path: string, spec: Record<string, [number[], number[], tf.DataType?]>, meta?: Record<string, string>): Promise<string> {
    const ts: Record<string, tf.Tensor> = {};
    for (const [k, [v, shape, dtype]] of Object.entries(spec)) ts[k] = tf.tensor(v, shape, dtype ?? 'float32');
    await writeFile(path, saveSafetensors(ts, meta));
    tf.dispose(Object.values(ts));
    return path;
  }

  /** Sums the lengths passed to FileHandle#read while `op` runs. */
  async function countReads<T>(op: () => Promise<T>): Promise<{ result: T; bytes: number; calls: number }> {
    const fh = await open(join(FIXTURES, 'dtypes.safetensors'), 'r');
    const proto = Object.getPrototypeOf(fh) as { read: (...a: unknown[]) => unknown };
    await fh.close();
    const spy = vi.spyOn(proto, 'read');
    try {
      const result = await op();
      const bytes = spy.mock.calls.reduce((s, c) => s + (c[2] as number), 0);
      return { result, bytes, calls: spy.mock.calls.length };
    } finally {
      spy.mockRestore();
    }
  }

  it('a single file: same tensors and metadata as readSafetensors', async () => {
    const path = join(FIXTURES, 'dtypes.safetensors');
    const a = await loadSafetensors(path);
    const b = readSafetensors(await readFile(path));
    expect({ ...a.metadata }).toEqual({ ...b.metadata });
    expect(Object.keys(a.tensors).sort()).toEqual(Object.keys(b.tensors).sort());
    for (const k of Object.keys(b.tensors)) {
      expect(a.tensors[k]!.dtype).toBe(b.tensors[k]!.dtype);
      expect(bits(Float32Array.from(a.tensors[k]!.dataSync())), k).toEqual(bits(Float32Array.from(b.tensors[k]!.dataSync())));
    }
    disposeAll(a);
    disposeAll(b);
  });

  it('a directory with model.safetensors', async () => {
    const d = join(dir, 'single');
    await mkdir(d);
    await writeST(join(d, 'model.safetensors'), { w: [[1, 2, 3], [3]], i: [[4], [1], 'int32'] }, { format: 'pt' });
    const r = await loadSafetensors(d);
    expect(Array.from(r.tensors.w!.dataSync())).toEqual([1, 2, 3]);
    expect(r.tensors.i!.dtype).toBe('int32');
    expect({ ...r.metadata }).toEqual({ format: 'pt' });
    disposeAll(r);
  });

  async function makeSharded(name: string): Promise<string> {
    const d = join(dir, name);
    await mkdir(join(d, 'sub'), { recursive: true });
    await writeST(join(d, 'model-00001-of-00002.safetensors'), { 'vision.a': [[1, 2], [2]], 'llm.x': [[9], [1]], 'stray': [[0], [1]] });
    await writeST(join(d, 'sub', 'model-00002-of-00002.safetensors'), { 'vision.b': [[3, 4, 5, 6], [2, 2], 'int32'], 'llm.y': [[7], [1]] });
    const index = {
      metadata: { total_size: 1234, format: 'pt' },
      weight_map: {
        'vision.a': 'model-00001-of-00002.safetensors',
        'llm.x': 'model-00001-of-00002.safetensors',
        'vision.b': 'sub/model-00002-of-00002.safetensors',
        'llm.y': 'sub/model-00002-of-00002.safetensors',
      },
    };
    await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify(index));
    return d;
  }

  it('a sharded directory: every tensor in the weight map, index metadata stringified', async () => {
    const d = await makeSharded('sharded');
    const r = await loadSafetensors(d);
    expect(Object.keys(r.tensors).sort()).toEqual(['llm.x', 'llm.y', 'vision.a', 'vision.b']); // 'stray' is not in the map
    expect(Array.from(r.tensors['vision.b']!.dataSync())).toEqual([3, 4, 5, 6]);
    expect(r.tensors['vision.b']!.shape).toEqual([2, 2]);
    expect({ ...r.metadata }).toEqual({ total_size: '1234', format: 'pt' });
    disposeAll(r);
  });

  it('prefix (string or list) on a sharded directory', async () => {
    const d = await makeSharded('sharded-prefix');
    const r = await loadSafetensors(d, { prefix: 'vision.' });
    expect(Object.keys(r.tensors).sort()).toEqual(['vision.a', 'vision.b']);
    disposeAll(r);
    const r2 = await loadSafetensors(d, { prefix: ['llm.y', 'vision.a'] });
    expect(Object.keys(r2.tensors).sort()).toEqual(['llm.y', 'vision.a']);
    disposeAll(r2);
    const r3 = await loadSafetensors(d, { prefix: [] });
    expect(Object.keys(r3.tensors)).toEqual([]);
  });

  it('prefix reads only the header and the matching byte ranges (positioned reads, whole file never read)', async () => {
    // 64 MiB of unmatched tensor, mostly a sparse hole; its I64 values are out of int32 range,
    // so decoding it would throw.
    const path = join(dir, 'big.safetensors');
    const big = 8 * 1024 * 1024; // I64 elements
    const header = { 'keep.w': entry('F32', [2], 0, 8), 'skip.big': entry('I64', [big], 8, 8 + 8 * big) };
    const head = build(header, new Uint8Array(0));
    const fh = await open(path, 'w');
    const first = new Uint8Array(8 + 8 + 8);
    new DataView(first.buffer).setFloat32(0, 0.5, true);
    new DataView(first.buffer).setFloat32(4, -2, true);
    new DataView(first.buffer).setBigInt64(8, 2n ** 40n, true); // skip.big[0]: out of range
    await fh.write(head, 0, head.length, 0);
    await fh.write(first, 0, first.length, head.length);
    await fh.truncate(head.length + 8 + 8 * big);
    await fh.close();

    const { result, bytes, calls } = await countReads(() => loadSafetensors(path, { prefix: 'keep.' }));
    expect(Object.keys(result.tensors)).toEqual(['keep.w']);
    expect(Array.from(result.tensors['keep.w']!.dataSync())).toEqual([0.5, -2]);
    expect(bytes).toBe(8 + (head.length - 8) + 8); // length field + header + keep.w
    expect(calls).toBe(3);
    disposeAll(result);
    // Without the prefix the poisoned tensor is read and rejected, and keep.w is disposed.
    await expectLoadError(() => loadSafetensors(path), /big\.safetensors: tensor "skip\.big": I64 value 1099511627776 at element 0 is outside the int32 range/);
  });

  it('shard names leading outside the directory are refused', async () => {
    const d = join(dir, 'escape');
    await mkdir(join(d, 'sub'), { recursive: true });
    await writeST(join(dir, 'evil.safetensors'), { evil: [[1], [1]] });
    await writeST(join(d, 'ok.safetensors'), { ok: [[1], [1]] });
    const cases: Array<[string, RegExp]> = [
      ['../evil.safetensors', /shard "\.\.\/evil\.safetensors" leads outside the checkpoint directory/],
      ['sub/../../evil.safetensors', /leads outside the checkpoint directory/],
      [join(dir, 'evil.safetensors'), /is an absolute path/],
      ['C:\\evil.safetensors', /is an absolute path/],
      ['.', /leads outside|not a valid/],
      ['', /not a valid file name/],
    ];
    for (const [shard, pattern] of cases) {
      await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ok: 'ok.safetensors', evil: shard } }));
      await expectLoadError(() => loadSafetensors(d), pattern);
      // Also when the escaping entry is not wanted by the prefix.
      await expectLoadError(() => loadSafetensors(d, { prefix: 'ok' }), pattern);
    }
  });

  it('a tensor listed in the index but missing from its shard: error, earlier shards disposed', async () => {
    const d = await makeSharded('missing');
    const idx = JSON.parse(await readFile(join(d, 'model.safetensors.index.json'), 'utf8'));
    idx.weight_map['vision.c'] = 'sub/model-00002-of-00002.safetensors';
    await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify(idx));
    await expectLoadError(() => loadSafetensors(d), /model-00002-of-00002\.safetensors: tensor "vision\.c" is listed in model\.safetensors\.index\.json but missing from this shard/);
  });

  it('bad index, bad files, bad arguments', async () => {
    const d = join(dir, 'badindex');
    await mkdir(d);
    await writeFile(join(d, 'model.safetensors.index.json'), '{"weight_map": [1]}');
    await expectLoadError(() => loadSafetensors(d), /"weight_map" must be an object/);
    await writeFile(join(d, 'model.safetensors.index.json'), '{nope');
    await expectLoadError(() => loadSafetensors(d), /not valid JSON/);
    await writeFile(join(d, 'model.safetensors.index.json'), '{"weight_map": {"a": 3}}');
    await expectLoadError(() => loadSafetensors(d), /weight_map tensor "a": shard must be a string/);
    await writeFile(join(d, 'model.safetensors.index.json'), '{"weight_map": {"a": "nothere.safetensors"}}');
    await expectLoadError(() => loadSafetensors(d), /cannot open .*nothere\.safetensors/);

    await expectLoadError(() => loadSafetensors(join(dir, 'does-not-exist')), /is neither a file nor a directory/);
    const empty = join(dir, 'emptydir');
    await mkdir(empty);
    await expectLoadError(() => loadSafetensors(empty), /holds neither model\.safetensors\.index\.json nor model\.safetensors/);
    const trunc = join(dir, 'trunc.safetensors');
    await writeFile(trunc, (await readFile(join(FIXTURES, 'dtypes.safetensors'))).subarray(0, 1000));
    await expectLoadError(() => loadSafetensors(trunc), /^loadSafetensors: .*trunc\.safetensors: header length 1144 exceeds the 992 bytes after the length field/);
    const tiny = join(dir, 'tiny.safetensors');
    await writeFile(tiny, new Uint8Array(3));
    await expectLoadError(() => loadSafetensors(tiny), /tiny\.safetensors: file is 3 bytes, too short/);
    await expectLoadError(() => loadSafetensors(trunc, { prefix: 3 as unknown as string }), /opts\.prefix must be a string or an array of strings/);
    await expectLoadError(() => loadSafetensors('' as string), /path must be a non-empty string/);
  });
});
