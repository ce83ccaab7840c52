/**
 * Values and errors rendered for messages, one definition for the whole library: every error
 * names the argument and shows what it got, in the same words everywhere.
 */

/** The message of a caught value (an Error's `message`, else its string form). */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** True for `{...}`-like values (not null, not an array). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value for an option error: strings quoted, numbers as JS prints them (NaN, Infinity). */
export function showValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v === undefined || v === null) return String(v);
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return Object.prototype.toString.call(v);
}

/** JSON rendering of a value for an error message, cut at `max` characters (hostile headers). */
export function showJson(v: unknown, max = Infinity): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > max ? `${s.slice(0, max)}…(${s.length} chars)` : s;
}
