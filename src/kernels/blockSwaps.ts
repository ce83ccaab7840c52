/**
 * Splits one transpose into a few transposes of rank ≤ 4, each swapping two adjacent blocks
 * of axes (`[pre, A, B, post] → [pre, B, A, post]`). tfjs-backend-wasm runs rank ≤ 4
 * transposes natively fast but rank 5–6 ones element by element (≈ 60× slower on the
 * 1008×1008×3 global crop); two cheap passes beat one slow one.
 */
export interface SwapStep {
  /** The current tensor viewed as `[pre, A, B, post]` (products of axis sizes). */
  view: [number, number, number, number];
}

/** The block swaps that take axes `0..r-1` (sizes `shape`) to the order `perm`. */
export function blockSwaps(shape: readonly number[], perm: readonly number[]): SwapStep[] {
  const order = shape.map((_, i) => i); // current axis order, by original axis id
  const steps: SwapStep[] = [];
  const prod = (axes: number[]) => axes.reduce((p, a) => p * shape[a]!, 1);
  for (let k = 0; k < perm.length; k++) {
    const m = order.indexOf(perm[k]!);
    if (m === k) continue;
    // B: the longest run at m that already matches perm[k..]; A: the axes between k and m.
    let len = 1;
    while (m + len < order.length && order[m + len] === perm[k + len]) len++;
    const A = order.slice(k, m);
    const B = order.slice(m, m + len);
    steps.push({ view: [prod(order.slice(0, k)), prod(A), prod(B), prod(order.slice(m + len))] });
    order.splice(k, m + len - k, ...B, ...A);
  }
  return steps;
}
