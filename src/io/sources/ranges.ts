/** Byte ranges of a source: checking one, and reading many grouped as the source wants. */
import { SourceError, type ByteSource } from './types.js';

/** A byte range of a source. @internal */
export interface ByteRange {
  offset: number;
  length: number;
}

/** Throws, naming the source, unless `[offset, offset + length)` lies inside it. @internal */
export function checkRange(src: ByteSource, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > src.size) {
    throw new SourceError(`${src.name}: cannot read bytes [${offset}, ${offset + length}) of a ${src.size}-byte file`);
  }
}

/**
 * Reads `ranges` from `source` in offset order, yielding each with its bytes. With
 * `source.coalesce`, ranges at most `gapBytes` apart are read together (at most `maxBytes` per
 * read; one longer range is read alone and split by the source); otherwise one read per range.
 * @internal
 */
export async function* readRanges<T extends ByteRange>(source: ByteSource, ranges: readonly T[]): AsyncGenerator<[T, Uint8Array]> {
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset);
  const co = source.coalesce;
  let i = 0;
  while (i < sorted.length) {
    const first = sorted[i]!;
    let end = first.offset + first.length;
    let j = i + 1;
    if (co) {
      while (j < sorted.length) {
        const r = sorted[j]!;
        const rEnd = Math.max(end, r.offset + r.length);
        if (r.offset - end > co.gapBytes || rEnd - first.offset > co.maxBytes) break;
        end = rEnd;
        j++;
      }
    }
    if (j === i + 1) {
      yield [first, await source.read(first.offset, first.length)];
    } else {
      const span = await source.read(first.offset, end - first.offset);
      for (let k = i; k < j; k++) {
        const r = sorted[k]!;
        yield [r, span.subarray(r.offset - first.offset, r.offset - first.offset + r.length)];
      }
    }
    i = j;
  }
}
