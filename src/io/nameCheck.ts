/**
 * The one error every weight loader throws when a checkpoint's names or shapes do not match
 * the model: all missing, unexpected and mis-shaped tensors named at once.
 */
export function throwIfMismatch(head: string, found: { missing: string[]; unexpected: string[]; problems: string[] }): void {
  const { missing, unexpected, problems } = found;
  if (!missing.length && !unexpected.length && !problems.length) return;
  const parts = [missing.length ? `missing: ${missing.join(', ')}` : '', unexpected.length ? `unexpected: ${unexpected.join(', ')}` : '', ...problems].filter(Boolean);
  throw new Error(`${head}: ${parts.join('; ')}`);
}
