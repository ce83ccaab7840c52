/**
 * Next-token choice from the language model's logits: greedy (argmax), or sampling with
 * temperature and nucleus (top-p) filtering with transformers' semantics, from a seedable
 * random source so that runs repeat.
 */

/** Options of {@link sampleNext}. */
export interface SampleOptions {
  /** Softmax temperature; 0 (the default) picks the argmax (greedy decoding). */
  temperature?: number;
  /**
   * Nucleus sampling: keep the most probable tokens whose cumulative probability first reaches
   * `topP` (the top token always kept), as transformers' `TopPLogitsWarper`. In (0, 1]; default 1.
   */
  topP?: number;
  /** Uniform numbers in [0, 1). Default `Math.random`; use {@link seededRng} for repeatable runs. */
  rng?: () => number;
}

const FN = 'sampleNext';

function checkLogits(logits: Float32Array | Float64Array): void {
  if (!(logits instanceof Float32Array || logits instanceof Float64Array)) {
    throw new Error(`${FN}: logits must be a Float32Array`);
  }
  if (logits.length === 0) throw new Error(`${FN}: logits are empty`);
  let finite = false;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (Number.isNaN(v)) throw new Error(`${FN}: logits contain NaN (first at index ${i})`);
    if (v === Infinity) throw new Error(`${FN}: logits contain +Infinity (first at index ${i})`);
    if (v !== -Infinity) finite = true;
  }
  if (!finite) throw new Error(`${FN}: every logit is -Infinity: no token can be chosen`);
}

/** The index of the largest value; ties go to the lowest index. */
export function argmax(logits: Float32Array | Float64Array): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/**
 * Choose the next token id from one position's logits (length = vocabulary size).
 * Greedy when `temperature` is 0; otherwise softmax(logits / temperature), restricted to the
 * top-p nucleus, renormalised, sampled with `rng`. Throws on NaN or +Infinity logits.
 */
export function sampleNext(logits: Float32Array, opts: SampleOptions = {}): number {
  checkLogits(logits);
  const temperature = opts.temperature ?? 0;
  const topP = opts.topP ?? 1;
  if (!Number.isFinite(temperature) || temperature < 0) {
    throw new Error(`${FN}: temperature must be a finite number >= 0, got ${temperature}`);
  }
  if (!(topP > 0 && topP <= 1)) throw new Error(`${FN}: topP must be in (0, 1], got ${topP}`);
  if (temperature === 0) return argmax(logits);

  const n = logits.length;
  // Softmax of logits / temperature, in float64.
  const max = logits[argmax(logits)]!;
  const probs = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const p = Math.exp((logits[i]! - max) / temperature);
    probs[i] = p;
    sum += p;
  }
  for (let i = 0; i < n; i++) probs[i] = probs[i]! / sum;

  // Candidates, most probable first (ties: lower id first); the nucleus when topP < 1.
  let order: number[];
  if (topP < 1) {
    order = Array.from({ length: n }, (_, i) => i).filter((i) => probs[i]! > 0);
    order.sort((a, b) => probs[b]! - probs[a]! || a - b);
    let cumulative = 0;
    let keep = 0;
    // Keep token k while the probability of the tokens before it is < topP: the smallest
    // prefix whose cumulative probability reaches topP (HF removes cumsum_ascending <= 1 - p).
    while (keep < order.length && cumulative < topP) {
      cumulative += probs[order[keep]!]!;
      keep++;
    }
    order.length = Math.max(1, keep);
  } else {
    order = [];
    for (let i = 0; i < n; i++) if (probs[i]! > 0) order.push(i);
  }

  let total = 0;
  for (const i of order) total += probs[i]!;
  const u = (opts.rng ?? Math.random)();
  if (!(u >= 0 && u < 1)) throw new Error(`${FN}: rng must return a number in [0, 1), got ${u}`);
  let r = u * total;
  for (const i of order) {
    r -= probs[i]!;
    if (r < 0) return i;
  }
  return order[order.length - 1]!;
}

/**
 * A deterministic uniform random source in [0, 1) (mulberry32) from a 32-bit integer seed:
 * the same seed gives the same sequence on every platform.
 */
export function seededRng(seed: number): () => number {
  if (!Number.isFinite(seed)) throw new Error(`seededRng: seed must be a finite number, got ${seed}`);
  let state = Math.trunc(seed) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
