/**
 * Loading safetensors checkpoints from anywhere: a local file or directory (Node), an `http(s)`
 * URL read with HTTP Range requests, a `Blob`/`File`, the `File`s of a picked folder — single
 * files and Hugging Face sharded checkpoints (`model.safetensors.index.json`), optionally only
 * the tensors under some name prefixes: the header first, then only the wanted byte ranges.
 *
 * Which files hold the tensors comes from the sources (sources/open.ts resolveCheckpoint); this
 * module reads headers and byte ranges. Nothing here imports a Node built-in (see nodeFiles.ts):
 * importing this module (or the package index) in a browser costs nothing.
 */
import type { Tensor } from '@tensorflow/tfjs-core';
import { errorMessage as message, isPlainObject } from '../util/format.js';
import {
  decodeTensorValues,
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  tensorFromDecoded,
  tensorLabel,
  type SafetensorsContents,
  type SafetensorsHeader,
} from './safetensors.js';
import {
  SAFETENSORS_INDEX_FILE,
  SourceError,
  describeSource,
  readRanges,
  resolveCheckpoint,
  type ByteSource,
  type CheckpointFile,
  type SafetensorsSource,
  type UrlSourceOptions,
} from './sources/index.js';

// Where a checkpoint's files are is the sources' business (sources/checkpoint.ts, open.ts);
// the loaders import it from here as before.
export { SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE, describeSource, resolveCheckpoint, type CheckpointFile, type ResolvedCheckpoint } from './sources/index.js';

/** Options of {@link loadSafetensors}: a prefix, and for URLs the {@link UrlSourceOptions}. */
export interface LoadSafetensorsOptions extends UrlSourceOptions {
  /**
   * Load only the tensors whose names start with this prefix (or with one of these). Only the
   * header and the byte ranges of those tensors are read. Default: every tensor.
   */
  prefix?: string | readonly string[];
}

const FN = 'loadSafetensors';

/** An error of `fn`: messages already starting with `fn:` pass; a source's error gets `fn: ` in front; others `fn: label: `. @internal */
export function loaderError(fn: string, e: unknown, label: string): Error {
  if (e instanceof Error && e.message.startsWith(`${fn}:`)) return e;
  if (e instanceof SourceError) return new Error(`${fn}: ${e.message}`, { cause: e });
  return new Error(`${fn}: ${label}: ${message(e)}`, { cause: e });
}

const headers = new WeakMap<ByteSource, SafetensorsHeader>();

/**
 * Reads and validates a safetensors header from a source: the 8-byte length, then the header
 * (parsed once per source object: a URL folder keeps its sources, so a second loader fetches
 * nothing again). @internal
 */
export async function readHeaderFrom(src: ByteSource, ctx: string): Promise<SafetensorsHeader> {
  const cached = headers.get(src);
  if (cached) return cached;
  const first = await src.read(0, Math.min(8, src.size));
  const n = readSafetensorsHeaderLength(first, src.size, ctx);
  const header = parseSafetensorsHeader(await src.read(8, n), src.size, ctx);
  headers.set(src, header);
  return header;
}

/**
 * Reads the tensors of one file that `want(name)` selects: the 8-byte length, the header, then
 * only the selected byte ranges (neighbouring ones in one request for a URL). Pushes every
 * tensor it makes onto `made` (for cleanup).
 * @returns The file's `__metadata__` and the names it found.
 */
async function loadFile(
  file: CheckpointFile,
  want: (name: string) => boolean,
  into: Record<string, Tensor>,
  made: Tensor[],
): Promise<{ metadata: Record<string, string>; names: string[] }> {
  const src = await file.open();
  try {
    const ctx = `${FN}: ${file.name}`;
    const header = await readHeaderFrom(src, ctx);
    const selected = header.entries.filter((e) => want(e.name)).sort((a, b) => a.begin - b.begin);
    const ranges = selected.map((e) => ({ offset: header.dataOffset + e.begin, length: e.end - e.begin, entry: e }));
    for await (const [{ entry: e }, bytes] of readRanges(src, ranges)) {
      const t = tensorFromDecoded(e.name, decodeTensorValues(e, bytes, ctx), ctx);
      made.push(t);
      into[e.name] = t;
    }
    return { metadata: header.metadata, names: header.entries.map((e) => e.name) };
  } finally {
    await src.close?.();
  }
}

function prefixFilter(opts: LoadSafetensorsOptions | undefined): (name: string) => boolean {
  if (opts === undefined) return () => true;
  if (!isPlainObject(opts)) throw new Error(`${FN}: opts must be an object, got ${typeof opts}`);
  const p = opts.prefix;
  if (p === undefined) return () => true;
  const list = typeof p === 'string' ? [p] : p;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) {
    throw new Error(`${FN}: opts.prefix must be a string or an array of strings, got ${JSON.stringify(p)}`);
  }
  const prefixes = [...list];
  return (name) => prefixes.some((s) => name.startsWith(s));
}

/**
 * Loads a safetensors checkpoint: from a local path (Node), a URL, a `Blob`/`File` or the
 * `File`s of a folder (see {@link SafetensorsSource}).
 *
 * A path is a safetensors file, or a directory holding either `model.safetensors.index.json`
 * (a Hugging Face sharded checkpoint: `{"metadata": {...}, "weight_map": {name: shardFile}}`)
 * or a single `model.safetensors`. Shard file names must stay inside the directory (absolute
 * paths and `..` escapes are refused; symlinks inside it are followed, as in the Hugging Face
 * cache). From each shard, only the tensors the weight map assigns to it are loaded; a tensor
 * missing from its shard is an error.
 *
 * An `http(s)` URL ending in `/` is such a folder (files resolve relative to it), one ending in
 * `.json` an index (shards relative to it), any other one file. A URL is read with HTTP Range
 * requests: `bytes=0-7` (the header length and, from `Content-Range`, the size), the header,
 * then only the byte ranges of the selected tensors (adjacent ones in one request, at most
 * `maxRequestBytes` each). Every response is checked (206, `Content-Range`, body length); a
 * failure is an error naming the URL. A server that ignores Range (200 with the whole file): see
 * {@link UrlSourceOptions.maxWholeFileBytes}.
 *
 * Every file's header is read and validated exactly as `readSafetensors` does; then only
 * the byte ranges of the selected tensors are read (the whole file is never read at once).
 * Dtypes map as in `readSafetensors` (U8 → int32, BOOL → bool, I64 → int32 range-checked). On
 * any error, every tensor made so far is disposed and an error whose message starts
 * `loadSafetensors:` (naming the file, the tensor and the problem) is thrown.
 *
 * @param source A `.safetensors` file or a checkpoint folder: a path, a URL, a Blob/File, Files.
 * @param opts `prefix`: load only tensors whose names start with it (or one of them); for URLs, {@link UrlSourceOptions}.
 * @returns The tensors by name, and metadata: a single file's `__metadata__`, or for a sharded
 * checkpoint the index's `"metadata"` (non-string values JSON-stringified, e.g. `total_size`).
 */
export async function loadSafetensors(source: SafetensorsSource, opts?: LoadSafetensorsOptions): Promise<SafetensorsContents> {
  if (typeof source === 'string' && source === '') throw new Error(`${FN}: path must be a non-empty string, got ""`);
  if (source === null || source === undefined || (typeof source !== 'string' && typeof source !== 'object')) {
    throw new Error(`${FN}: path must be a non-empty string (or a URL, a Blob/File, Files), got ${JSON.stringify(source)}`);
  }
  const want = prefixFilter(opts);
  const tensors: Record<string, Tensor> = Object.create(null);
  const made: Tensor[] = [];
  try {
    const r = await resolveCheckpoint(source, FN, opts);
    if (r.kind === 'single') {
      const { metadata } = await loadFile(r.file, want, tensors, made);
      return { tensors, metadata };
    }
    // Shards in first-mention order, each with the wanted names the index assigns to it.
    const shards = new Map<CheckpointFile, Set<string>>();
    for (const [name, file] of r.weightMap) {
      if (!want(name)) continue;
      let names = shards.get(file);
      if (!names) shards.set(file, (names = new Set()));
      names.add(name);
    }
    for (const [file, names] of shards) {
      const found = await loadFile(file, (n) => names.has(n), tensors, made);
      const present = new Set(found.names);
      for (const name of names) {
        if (!present.has(name)) throw new Error(`${FN}: ${file.name}: ${tensorLabel(name)} is listed in ${SAFETENSORS_INDEX_FILE} but missing from this shard`);
      }
    }
    return { tensors, metadata: r.metadata };
  } catch (e) {
    for (const t of made) t.dispose();
    throw loaderError(FN, e, describeSource(source));
  }
}
