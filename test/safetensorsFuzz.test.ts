// Deterministic fuzz of the safetensors reader: valid files, mutated thousands of ways (byte
// flips, truncation, extension, forged header lengths, JSON snippets spliced into the header,
// structural edits with hostile values, duplicate keys, dtype swaps). Every call must either
// return (the result then round-trips through saveSafetensors) or throw an Error whose message
// starts with `readSafetensors:`; no other exception, and no tensor left behind.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSafetensors } from '../src/io/loadSafetensors.js';
import { readSafetensors, saveSafetensors } from '../src/io/safetensors.js';

const SEED = 0x5afe7e45;
const ITERATIONS = 20_000;
const LOAD_ITERATIONS = 150;

/** mulberry32: small, fast, deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = ReturnType<typeof prng>;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;

function headerOf(b: Uint8Array): { n: number; text: string } | null {
  if (b.length < 8) return null;
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  if (n > b.length - 8) return null;
  return { n, text: new TextDecoder().decode(b.subarray(8, 8 + n)) };
}

/** A file with header text `text` and the data section of `from`. */
function withHeader(from: Uint8Array, text: string, fixLength = true): Uint8Array {
  const h = headerOf(from);
  const data = h ? from.subarray(8 + h.n) : new Uint8Array(0);
  const hb = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + hb.length + data.length);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, fixLength ? BigInt(hb.length) : from.length >= 8 ? new DataView(from.buffer, from.byteOffset, 8).getBigUint64(0, true) : 0n, true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
const HOSTILE: readonly unknown[] = [
  1e308, -1, -0, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 2 ** 31, 1.5, 0, 1, 3, 7, 8, '12', '', null, true, [], {}, { a: { b: [] } },
  [0], [1, 2, 3], [-5, 3], [0, 1e20], [1e308, 1e308], [2 ** 31, 2 ** 31], [0, 0], [[1]], ['F32'], 'F32', 'F16', 'BF16', 'I64',
  'BOOL', 'U8', 'I32', 'F64', 'U16', '__proto__', [2 ** 40, 2 ** 40], [0, 2 ** 53 - 1], [1, 0],
];
const SNIPPETS: readonly string[] = [
  '1e400', '-1', '-0', '9007199254740993', '18446744073709551616', '0.5', 'null', 'true', '{}', '[]', '{"a":{"b":{"c":[]}}}',
  '"__proto__":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},', '"constructor":1,', '"__metadata__":{"k":1},',
  '"__metadata__":{"k":"v"},', '"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},', deep(64), deep(2000), ',', ':', '"', '\\u0000',
  '\\ud800', '"\\uDFFF"', 'NaN', 'Infinity', ' ', '}', '{', ']', '[', '"dtype":"I64",', '"shape":[4294967296,4294967296],',
  '"data_offsets":[4,0],', '\u00e9', '\ufeff', '\u2028',
];
const DTYPES = ['F32', 'F16', 'BF16', 'I32', 'I64', 'BOOL', 'U8', 'F64', 'I8', 'U32', 'f32', ''];

/** Applies one random mutation. */
function mutate(r: Rand, b: Uint8Array): Uint8Array {
  const h = headerOf(b);
  switch (int(r, 10)) {
    case 0: {
      // flip bytes anywhere
      const out = b.slice();
      for (let k = 1 + int(r, 4); k > 0 && out.length > 0; k--) {
        const at = int(r, out.length);
        out[at] = out[at]! ^ (1 << int(r, 8));
      }
      return out;
    }
    case 1: {
      // random bytes in the header (or the length field)
      const out = b.slice();
      const end = h ? 8 + h.n : Math.min(out.length, 64);
      for (let k = 1 + int(r, 3); k > 0 && end > 0; k--) out[int(r, end)] = int(r, 256);
      return out;
    }
    case 2:
      return b.slice(0, int(r, b.length + 1)); // truncate
    case 3: {
      // extend with random bytes
      const extra = new Uint8Array(1 + int(r, 64)).map(() => int(r, 256));
      const out = new Uint8Array(b.length + extra.length);
      out.set(b);
      out.set(extra, b.length);
      return out;
    }
    case 4: {
      // forge the header length
      const out = b.length >= 8 ? b.slice() : new Uint8Array(8);
      const n = h?.n ?? 0;
      const cand = [0n, 1n, 2n, BigInt(Math.max(0, n - 1)), BigInt(n + 1), BigInt(out.length - 8), BigInt(out.length - 7), 2n ** 31n, 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 100_000_000n, 100_000_001n, BigInt(int(r, out.length))];
      new DataView(out.buffer).setBigUint64(0, pick(r, cand), true);
      return out;
    }
    case 5: {
      // splice a JSON snippet into the header text
      if (!h) return b;
      const at = int(r, h.text.length + 1);
      return withHeader(b, h.text.slice(0, at) + pick(r, SNIPPETS) + h.text.slice(at + (r() < 0.3 ? int(r, 4) : 0)), r() < 0.9);
    }
    case 6:
    case 7: {
      // structural edit: set a field of an entry (or a top-level key) to a hostile value
      if (!h) return b;
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(h.text);
      } catch {
        return b;
      }
      if (typeof json !== 'object' || json === null || Array.isArray(json)) return b;
      const keys = Object.keys(json);
      if (keys.length === 0) return b;
      const key = pick(r, keys);
      const e = json[key];
      const v = pick(r, HOSTILE);
      if (typeof e === 'object' && e !== null && !Array.isArray(e) && r() < 0.85) {
        const field = key === '__metadata__' ? pick(r, [...Object.keys(e), 'new']) : pick(r, ['dtype', 'shape', 'data_offsets', 'shape', 'data_offsets', 'extra']);
        const ent = e as Record<string, unknown>;
        if (Array.isArray(ent[field]) && r() < 0.5) {
          const arr = [...(ent[field] as unknown[])];
          arr[int(r, arr.length + 1)] = v;
          ent[field] = arr;
        } else {
          ent[field] = v;
        }
      } else {
        json[key] = v;
      }
      return withHeader(b, JSON.stringify(json));
    }
    case 8: {
      // duplicate keys: repeat an entry (last one wins in JSON.parse) with other offsets
      if (!h) return b;
      const m = /"([^"\\]*)":\{"dtype":"[A-Z0-9]*","shape":\[[0-9,]*\],"data_offsets":\[[0-9]+,[0-9]+\]\}/.exec(h.text);
      if (!m) return b;
      const b0 = int(r, 64);
      const dup = `"${m[1]}":{"dtype":"${pick(r, DTYPES)}","shape":[${int(r, 5)}],"data_offsets":[${b0},${b0 + int(r, 20)}]}`;
      const text = r() < 0.5 ? h.text.replace(m[0], `${m[0]},${dup}`) : h.text.replace(m[0], `${dup},${m[0]}`);
      return withHeader(b, text);
    }
    default: {
      // swap a dtype name, same text length when possible
      if (!h) return b;
      const ms = [...h.text.matchAll(/"dtype":"([A-Z0-9]*)"/g)];
      if (ms.length === 0) return b;
      const m = pick(r, ms);
      const text = h.text.slice(0, m.index) + `"dtype":"${pick(r, DTYPES)}"` + h.text.slice(m.index! + m[0].length);
      return withHeader(b, text);
    }
  }
}

function baseFiles(): Uint8Array[] {
  const fixtures = fileURLToPath(new URL('./fixtures/safetensors/', import.meta.url));
  const official = new Uint8Array(readFileSync(join(fixtures, 'dtypes.safetensors')));
  const ts = {
    w: tf.tensor2d([[1, -2, 3.5], [NaN, Infinity, -0]]),
    idx: tf.tensor1d([0, 7, -9, 2 ** 31 - 1], 'int32'),
    mask: tf.tensor1d([true, false, true], 'bool'),
    s: tf.scalar(4),
  };
  const saved = saveSafetensors(ts, { format: 'pt' });
  tf.dispose(Object.values(ts));
  // Hand-built: every dtype, unaligned, with a gap.
  const header = {
    u: { dtype: 'U8', shape: [3], data_offsets: [0, 3] },
    h: { dtype: 'F16', shape: [2], data_offsets: [3, 7] },
    b: { dtype: 'BF16', shape: [1, 2], data_offsets: [7, 11] },
    q: { dtype: 'I64', shape: [2], data_offsets: [13, 29] },
    k: { dtype: 'BOOL', shape: [2], data_offsets: [29, 31] },
    i: { dtype: 'I32', shape: [1], data_offsets: [31, 35] },
    __metadata__: { a: 'b' },
  };
  const data = new Uint8Array(35).map((_, i) => (i * 37) & 0xff);
  new DataView(data.buffer).setBigInt64(13, -3n, true);
  new DataView(data.buffer).setBigInt64(21, 5n, true);
  const hand = withHeader(new Uint8Array(8), JSON.stringify(header));
  const file = new Uint8Array(hand.length + data.length);
  file.set(hand);
  file.set(data, hand.length);
  return [official, saved, file, saveSafetensors({})];
}

/** Reads `b`; returns 'ok' or the first word of the problem, failing on any foreign exception. */
function check(b: Uint8Array, label: string): string {
  let result: ReturnType<typeof readSafetensors>;
  try {
    result = readSafetensors(b);
  } catch (e) {
    if (!(e instanceof Error) || !e.message.startsWith('readSafetensors:')) {
      throw new Error(`${label}: foreign exception ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }
    return e.message.replace(/^readSafetensors: (tensor "(?:[^"\\]|\\.)*"[^:]*: )?/, '').split(/[ :]/)[0] ?? '';
  }
  try {
    // Whatever was accepted round-trips exactly.
    const again = readSafetensors(saveSafetensors(result.tensors, result.metadata));
    for (const [k, t] of Object.entries(result.tensors)) {
      const u = again.tensors[k];
      if (!u || u.dtype !== t.dtype || JSON.stringify(u.shape) !== JSON.stringify(t.shape)) throw new Error(`${label}: round trip changed ${k}`);
      const x = new Uint8Array(t.dataSync().buffer.slice(0));
      const y = new Uint8Array(u.dataSync().buffer.slice(0));
      if (x.length !== y.length || x.some((v, i) => v !== y[i])) throw new Error(`${label}: round trip changed the values of ${k}`);
    }
    tf.dispose(Object.values(again.tensors));
  } finally {
    tf.dispose(Object.values(result.tensors));
  }
  return 'ok';
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

describe('safetensors fuzz', () => {
  it(`readSafetensors: ${ITERATIONS} seeded mutations return or throw a readSafetensors: Error, leaking nothing`, () => {
    const bases = baseFiles();
    for (const b of bases) expect(check(b, 'base')).toBe('ok');
    const r = prng(SEED);
    const outcomes = new Map<string, number>();
    const before = tf.memory().numTensors;
    const t0 = performance.now();
    for (let i = 0; i < ITERATIONS; i++) {
      let b = pick(r, bases);
      for (let k = 1 + (r() < 0.3 ? int(r, 3) : 0); k > 0; k--) b = mutate(r, b);
      const o = check(b, `iteration ${i} (seed ${SEED})`);
      outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
      if (tf.memory().numTensors !== before) throw new Error(`iteration ${i}: ${tf.memory().numTensors - before} tensors leaked`);
    }
    const ms = performance.now() - t0;
    const summary = [...outcomes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(' ');
    console.log(`safetensors fuzz: ${ITERATIONS} iterations in ${ms.toFixed(0)} ms; outcomes: ${summary}`);
    // The mutations reach past the first checks: some files still load, many kinds of error occur.
    expect(outcomes.get('ok') ?? 0).toBeGreaterThan(ITERATIONS / 50);
    expect(outcomes.size).toBeGreaterThan(8);
  });

  it(`loadSafetensors: ${LOAD_ITERATIONS} mutated files on disk, with and without a prefix`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'inf-llava-stfuzz-'));
    try {
      const bases = baseFiles();
      const r = prng(SEED ^ 0x1234);
      const before = tf.memory().numTensors;
      let ok = 0;
      for (let i = 0; i < LOAD_ITERATIONS; i++) {
        let b = pick(r, bases);
        for (let k = 1 + int(r, 2); k > 0; k--) b = mutate(r, b);
        const path = join(dir, `f${i % 4}.safetensors`);
        await writeFile(path, b);
        for (const opts of [undefined, { prefix: pick(r, ['x.', 'expected.F', 'w', 'q', '']) }]) {
          try {
            const res = await loadSafetensors(path, opts);
            tf.dispose(Object.values(res.tensors));
            ok++;
          } catch (e) {
            if (!(e instanceof Error) || !e.message.startsWith('loadSafetensors:')) {
              throw new Error(`load iteration ${i}: foreign exception ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
            }
          }
          if (tf.memory().numTensors !== before) throw new Error(`load iteration ${i}: tensors leaked`);
        }
      }
      expect(ok).toBeGreaterThan(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
