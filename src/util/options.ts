/**
 * Option objects are checked by name: a misspelt option (`quantise`, `maxTokens` for
 * `maxNewTokens`) is an error with a "did you mean" instead of being silently ignored.
 */

/** Levenshtein distance, for "did you mean" on option names. */
export function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/**
 * `' (did you mean X?)'` for the closest of `known` to `name` (case and punctuation ignored):
 * within 3 edits, or the only option it is the start of (4 letters at least); else `''`.
 */
export function didYouMean(name: string, known: readonly string[]): string {
  const norm = (s: string) => s.toLowerCase().replace(/[^a-z]/g, '');
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(norm(name), norm(k));
    if (d < bestD) [best, bestD] = [k, d];
  }
  if (best !== undefined && bestD <= 3) return ` (did you mean ${best}?)`;
  const starts = norm(name).length >= 4 ? known.filter((k) => norm(k).startsWith(norm(name))) : [];
  return starts.length === 1 ? ` (did you mean ${starts[0]}?)` : '';
}

/**
 * Throws `${fn}: unknown option "x" (did you mean y?); options: a, b, c` for the first key of
 * `opts` not in `known`. `opts` must be an object (or undefined: nothing to check).
 */
export function checkOptionNames(fn: string, opts: unknown, known: readonly string[]): void {
  if (opts === undefined) return;
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) throw new Error(`${fn}: options must be an object, got ${opts === null ? 'null' : Array.isArray(opts) ? 'an array' : typeof opts}`);
  for (const k of Object.keys(opts)) {
    if (!known.includes(k)) throw new Error(`${fn}: unknown option ${JSON.stringify(k)}${didYouMean(k, known)}; options: ${known.join(', ')}`);
  }
}
