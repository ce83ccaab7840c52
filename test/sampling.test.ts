import { describe, expect, it } from 'vitest';
import { argmax, sampleNext, seededRng } from '../src/pipeline/sampling.js';

const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);

/** Empirical distribution of `draws` samples. */
function histogram(logits: Float32Array, opts: Parameters<typeof sampleNext>[1], draws: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampleNext(logits, opts)]!++;
  return counts.map((c) => c / draws);
}

function softmax(xs: number[], t: number): number[] {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp((x - m) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** Reference top-p, transcribed from transformers' TopPLogitsWarper (ascending sort, cumsum). */
function hfTopPKeep(probs: number[], p: number): Set<number> {
  const asc = probs.map((q, i) => [q, i] as const).sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  const keep = new Set<number>();
  let cum = 0;
  asc.forEach(([q, i], k) => {
    cum += q;
    const remove = cum <= 1 - p && k !== asc.length - 1; // min_tokens_to_keep = 1 keeps the top
    if (!remove) keep.add(i);
  });
  return keep;
}

describe('sampleNext: greedy', () => {
  it('temperature 0 (the default) is argmax', () => {
    const logits = f32([0.1, 3, -2, 2.9, 1]);
    expect(sampleNext(logits)).toBe(1);
    expect(sampleNext(logits, { temperature: 0 })).toBe(1);
    expect(sampleNext(logits, { temperature: 0, topP: 0.1, rng: () => 0.99 })).toBe(1);
    expect(argmax(logits)).toBe(1);
  });

  it('ties go to the lowest id; -Infinity is allowed', () => {
    expect(sampleNext(f32([1, 5, 5, 5]))).toBe(1);
    expect(sampleNext(f32([-Infinity, -Infinity, -3, -3]))).toBe(2);
    expect(sampleNext(f32([7]))).toBe(0);
  });

  it('never calls the rng', () => {
    let calls = 0;
    sampleNext(f32([1, 2, 3]), { rng: () => (calls++, 0.5) });
    expect(calls).toBe(0);
  });
});

describe('sampleNext: temperature', () => {
  it('samples softmax(logits / T) (inverse CDF in id order)', () => {
    const logits = [1, 2, 0.5, -1];
    const probs = softmax(logits, 0.7);
    // rng = u lands in the token whose cumulative interval contains u.
    let cum = 0;
    probs.forEach((p, i) => {
      const mid = cum + p / 2;
      expect(sampleNext(f32(logits), { temperature: 0.7, rng: () => mid })).toBe(i);
      cum += p;
    });
    expect(sampleNext(f32(logits), { temperature: 0.7, rng: () => 0 })).toBe(0);
    expect(sampleNext(f32(logits), { temperature: 0.7, rng: () => 0.999999 })).toBe(3);
  });

  it('empirical frequencies follow the tempered softmax', () => {
    const logits = [0, 1, 2];
    for (const t of [0.5, 1, 2]) {
      const freq = histogram(f32(logits), { temperature: t, rng: seededRng(42 + t) }, 20000);
      softmax(logits, t).forEach((p, i) => expect(Math.abs(freq[i]! - p)).toBeLessThan(0.015));
    }
  });

  it('low temperature concentrates, high temperature flattens', () => {
    const logits = f32([0, 1, 2]);
    const cold = histogram(logits, { temperature: 0.05, rng: seededRng(1) }, 2000);
    expect(cold[2]).toBeGreaterThan(0.99);
    const hot = histogram(logits, { temperature: 100, rng: seededRng(2) }, 6000);
    hot.forEach((p) => expect(Math.abs(p - 1 / 3)).toBeLessThan(0.03));
  });

  it('-Infinity logits are never sampled', () => {
    const freq = histogram(f32([-Infinity, 0, -Infinity, 0]), { temperature: 1, rng: seededRng(3) }, 2000);
    expect(freq[0]).toBe(0);
    expect(freq[2]).toBe(0);
  });
});

describe('sampleNext: top-p (transformers semantics)', () => {
  it('keeps the smallest most-probable set whose cumulative probability reaches p', () => {
    // probs ~ [0.5, 0.25, 0.125, 0.125]
    const logits = f32([Math.log(0.5), Math.log(0.25), Math.log(0.125), Math.log(0.125)]);
    const support = (p: number): number[] => {
      const freq = histogram(logits, { temperature: 1, topP: p, rng: seededRng(9) }, 3000);
      return freq.flatMap((f, i) => (f > 0 ? [i] : []));
    };
    expect(support(0.45)).toEqual([0]);
    expect(support(0.6)).toEqual([0, 1]);
    expect(support(0.75)).toEqual([0, 1]);
    expect(support(0.76)).toEqual([0, 1, 2]); // tie at 0.125: the lower id first
    expect(support(1)).toEqual([0, 1, 2, 3]);
    expect(support(0.01)).toEqual([0]); // the top token is always kept
  });

  it('renormalises inside the nucleus', () => {
    const logits = f32([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
    const freq = histogram(logits, { temperature: 1, topP: 0.8, rng: seededRng(5) }, 20000);
    expect(Math.abs(freq[0]! - 0.5 / 0.8)).toBeLessThan(0.015);
    expect(Math.abs(freq[1]! - 0.3 / 0.8)).toBeLessThan(0.015);
    expect(freq[2]).toBe(0);
  });

  it('matches a transcription of TopPLogitsWarper on random logits', () => {
    const rng = seededRng(123);
    for (let trial = 0; trial < 40; trial++) {
      const n = 3 + Math.floor(rng() * 10);
      const logits = Array.from({ length: n }, () => (rng() - 0.5) * 6);
      const t = 0.3 + rng() * 1.5;
      const p = 0.05 + rng() * 0.9;
      const keep = hfTopPKeep(softmax(logits, t), p);
      const seen = new Set<number>();
      // Sweep u over [0, 1): every kept token is hit, no other.
      for (let k = 0; k < 400; k++) seen.add(sampleNext(f32(logits), { temperature: t, topP: p, rng: () => k / 400 }));
      expect([...seen].sort((a, b) => a - b)).toEqual([...keep].sort((a, b) => a - b));
    }
  });

  it('temperature is applied before top-p', () => {
    // At T = 1 probs ~ [0.58, 0.21, 0.21]: p = 0.7 keeps two tokens. At T = 0.2 the top token
    // alone is > 0.99.
    const logits = f32([1, 0, 0]);
    const freq = histogram(logits, { temperature: 0.2, topP: 0.7, rng: seededRng(4) }, 1000);
    expect(freq[0]).toBe(1);
  });
});

describe('seededRng', () => {
  it('is deterministic and in [0, 1)', () => {
    const a = seededRng(1234);
    const b = seededRng(1234);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    xs.forEach((x) => expect(x >= 0 && x < 1).toBe(true));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
  });

  it('pins mulberry32 (same numbers on every platform)', () => {
    // mulberry32(0) starts 0.26642920868471265 (= 1144304738 / 2^32), the reference value.
    const r = seededRng(0);
    expect([r(), r(), r()].map((x) => x * 4294967296)).toEqual([1144304738, 1416247, 958946056]);
    const s = seededRng(1234);
    expect([s(), s()].map((x) => x * 4294967296)).toEqual([314799534, 3021131492]);
    expect(seededRng(2 ** 32 + 5)()).toBe(seededRng(5)()); // seeds are taken mod 2^32
  });

  it('seeded sampling runs repeat exactly; different seeds differ', () => {
    const logits = f32(Array.from({ length: 64 }, (_, i) => Math.sin(i) * 2));
    const run = (seed: number): number[] => {
      const rng = seededRng(seed);
      return Array.from({ length: 200 }, () => sampleNext(logits, { temperature: 1, topP: 0.9, rng }));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
    expect(seededRng(1)()).not.toBe(seededRng(2)());
  });

  it('rejects non-finite seeds', () => {
    expect(() => seededRng(Number.NaN)).toThrow(/seededRng: seed must be a finite number/);
  });
});

describe('sampleNext: errors', () => {
  it('NaN logits', () => {
    expect(() => sampleNext(f32([0, Number.NaN, 1]))).toThrow(/sampleNext: logits contain NaN \(first at index 1\)/);
    expect(() => sampleNext(f32([0, Number.NaN, 1]), { temperature: 1 })).toThrow(/NaN/);
  });

  it('+Infinity, all -Infinity, empty', () => {
    expect(() => sampleNext(f32([0, Infinity]))).toThrow(/\+Infinity \(first at index 1\)/);
    expect(() => sampleNext(f32([-Infinity, -Infinity]))).toThrow(/every logit is -Infinity/);
    expect(() => sampleNext(f32([]))).toThrow(/logits are empty/);
  });

  it('bad options', () => {
    const l = f32([0, 1]);
    expect(() => sampleNext(l, { temperature: -1 })).toThrow(/temperature must be a finite number >= 0/);
    expect(() => sampleNext(l, { temperature: Number.NaN })).toThrow(/temperature/);
    expect(() => sampleNext(l, { temperature: 1, topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => sampleNext(l, { temperature: 1, topP: 1.5 })).toThrow(/topP/);
    expect(() => sampleNext(l, { temperature: 1, rng: () => 1 })).toThrow(/rng must return a number in \[0, 1\)/);
  });
});
