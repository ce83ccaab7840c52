/** Test helper: a temporary copy of a checkpoint directory with one tensor's dtype rewritten in the header. */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Copies `dir` and marks `name` as I64 (its float bits read as int64 fall outside int32: decoding throws), halving
 * its shape so the byte length still matches. A loader that succeeds on the copy never decoded it.
 */
export function copyWithPoisonedTensor(dir: string, name: string): string {
  const out = mkdtempSync(join(tmpdir(), 'inf-llava-ckpt-'));
  cpSync(dir, out, { recursive: true });
  const path = join(out, 'model.safetensors');
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>;
  const entry = header[name];
  if (!entry || entry.shape[0]! % 2 !== 0) throw new Error(`copyWithPoisonedTensor: ${name} missing or odd first dimension`);
  entry.dtype = 'I64';
  entry.shape = [entry.shape[0]! / 2, ...entry.shape.slice(1)];
  const text = JSON.stringify(header);
  if (text.length > n) throw new Error('copyWithPoisonedTensor: header grew');
  bytes.write(text.padEnd(n, ' '), 8, 'utf8');
  writeFileSync(path, bytes);
  return out;
}
