/**
 * Loading safetensors checkpoints from anywhere: a local file or directory (Node), an `http(s)`
 * URL read with HTTP Range requests, a `Blob`/`File`, the `File`s of a picked folder — single
 * files and Hugging Face sharded checkpoints (`model.safetensors.index.json`), optionally only
 * the tensors under some name prefixes: the header first, then only the wanted byte ranges.
 *
 * Nothing here imports a Node built-in (local files are read through `process.getBuiltinModule`,
 * see nodeFiles.ts): importing this module (or the package index) in a browser costs nothing.
 */
import type { Tensor } from '@tensorflow/tfjs-core';
import { errorMessage as message, isPlainObject } from '../util/format.js';
import { nodeModules, pathKind as kind, shardPath } from './nodeFiles.js';
import {
  SAFETENSORS_MAX_HEADER_BYTES,
  decodeTensorValues,
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  tensorFromDecoded,
  tensorLabel,
  type SafetensorsContents,
  type SafetensorsHeader,
} from './safetensors.js';
import {
  SourceError,
  blobSource,
  classifySource,
  missingWhy,
  openPathFile,
  openUrlFile,
  readRanges,
  toDirectory,
  urlDirectory,
  urlFolderOf,
  utf8Text,
  type ByteSource,
  type ModelDirectory,
  type SafetensorsSource,
  type UrlSourceOptions,
} from './source.js';

/** The index file of a sharded Hugging Face checkpoint. */
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';
/** The single-file checkpoint looked for in a directory without an index. */
export const SAFETENSORS_SINGLE_FILE = 'model.safetensors';

/** Options of {@link loadSafetensors}: a prefix, and for URLs the {@link UrlSourceOptions}. */
export interface LoadSafetensorsOptions extends UrlSourceOptions {
  /**
   * Load only the tensors whose names start with this prefix (or with one of these). Only the
   * header and the byte ranges of those tensors are read. Default: every tensor.
   */
  prefix?: string | readonly string[];
}

const FN = 'loadSafetensors';
const BROWSER_HINT = 'use readSafetensors on fetched bytes';

/** One file of a checkpoint: its name for messages, and how to open it. @internal */
export interface CheckpointFile {
  readonly name: string;
  open(): Promise<ByteSource>;
}

/** A checkpoint's files: one file, or a sharded index's weight map. @internal */
export type ResolvedCheckpoint =
  | { kind: 'single'; file: CheckpointFile }
  | {
      kind: 'sharded';
      /** The index file, for messages. */
      index: string;
      /** The index's `"metadata"` (non-string values JSON-stringified). */
      metadata: Record<string, string>;
      /** Tensor name → its shard (one object per shard), in index order. */
      weightMap: Map<string, CheckpointFile>;
    };

/** An error of `fn`: messages already starting with `fn:` pass; a source's error gets `fn: ` in front; others `fn: label: `. @internal */
export function loaderError(fn: string, e: unknown, label: string): Error {
  if (e instanceof Error && e.message.startsWith(`${fn}:`)) return e;
  if (e instanceof SourceError) return new Error(`${fn}: ${e.message}`, { cause: e });
  return new Error(`${fn}: ${label}: ${message(e)}`, { cause: e });
}

/** A source in words, for messages. @internal */
export function describeSource(source: unknown): string {
  if (typeof source === 'string') return source;
  if (typeof URL !== 'undefined' && source instanceof URL) return source.href;
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    const name = (source as { name?: unknown }).name;
    return typeof name === 'string' && name !== '' ? name : `Blob (${source.size} bytes)`;
  }
  const name = (source as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : 'files';
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

function pathFile(path: string): CheckpointFile {
  return { name: path, open: () => openPathFile(path) };
}

function parseIndex(text: string, index: string, fn: string): { metadata: Record<string, string>; shards: Map<string, string> } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${fn}: ${index}: not valid JSON: ${message(e)}`);
  }
  if (!isPlainObject(json)) throw new Error(`${fn}: ${index}: must be a JSON object`);
  const map = json.weight_map;
  if (!isPlainObject(map)) throw new Error(`${fn}: ${index}: "weight_map" must be an object of tensor name -> shard file`);
  const shards = new Map<string, string>();
  for (const name of Object.keys(map)) {
    const shard = map[name];
    if (typeof shard !== 'string') throw new Error(`${fn}: ${index}: weight_map ${tensorLabel(name)}: shard must be a string`);
    shards.set(name, shard);
  }
  const metadata: Record<string, string> = Object.create(null);
  if (json.metadata !== undefined && json.metadata !== null) {
    if (!isPlainObject(json.metadata)) throw new Error(`${fn}: ${index}: "metadata" must be an object`);
    for (const key of Object.keys(json.metadata)) {
      const v = json.metadata[key];
      metadata[key] = typeof v === 'string' ? v : JSON.stringify(v);
    }
  }
  return { metadata, shards };
}

/**
 * A shard name from an index as a `/`-separated path inside the folder (any runtime: no Node
 * path module), refusing absolute paths, URLs and `..` escapes.
 */
function relativeShard(shard: string, index: string, fn: string): string {
  const bad = (why: string) => new Error(`${fn}: ${index}: shard ${JSON.stringify(shard)} ${why}`);
  if (shard === '' || shard.includes('\0')) throw bad('is not a valid file name');
  if (/^[\\/]/.test(shard) || /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(shard)) throw bad('is an absolute path; shards must be inside the checkpoint directory');
  const out: string[] = [];
  for (const seg of shard.split(/[\\/]/)) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length === 0) throw bad('leads outside the checkpoint directory');
      out.pop();
    } else out.push(seg);
  }
  if (out.length === 0) throw bad('leads outside the checkpoint directory');
  return out.join('/');
}

async function mustOpen(dir: ModelDirectory, file: string): Promise<ByteSource> {
  const src = await dir.open(file);
  if (!src) throw new SourceError(`cannot open ${dir.pathOf(file)}: ${missingWhy(dir)}`);
  return src;
}

/** A sharded checkpoint's index in a folder: its shards resolved in the folder. */
async function shardedIn(dir: ModelDirectory, indexFile: string, bytes: Uint8Array, fn: string): Promise<ResolvedCheckpoint> {
  const index = dir.pathOf(indexFile);
  if (bytes.length > SAFETENSORS_MAX_HEADER_BYTES) {
    throw new Error(`${fn}: cannot read ${index}: is ${bytes.length} bytes, over the limit of ${SAFETENSORS_MAX_HEADER_BYTES}`);
  }
  const { metadata, shards } = parseIndex(utf8Text(bytes), index, fn);
  const prefix = indexFile.includes('/') ? indexFile.slice(0, indexFile.lastIndexOf('/') + 1) : '';
  const files = new Map<string, CheckpointFile>();
  const weightMap = new Map<string, CheckpointFile>();
  for (const [name, shard] of shards) {
    const rel = prefix + relativeShard(shard, index, fn);
    let f = files.get(rel);
    if (!f) files.set(rel, (f = { name: dir.pathOf(rel), open: () => mustOpen(dir, rel) }));
    weightMap.set(name, f);
  }
  return { kind: 'sharded', index, metadata, weightMap };
}

/** A folder: its index when there is one, else its `model.safetensors`. */
async function inFolder(dir: ModelDirectory, fn: string): Promise<ResolvedCheckpoint> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await dir.readFile(SAFETENSORS_INDEX_FILE);
  } catch (e) {
    throw new Error(`${fn}: cannot read ${dir.pathOf(SAFETENSORS_INDEX_FILE)}: ${message(e)}`, { cause: e });
  }
  if (bytes !== undefined) return shardedIn(dir, SAFETENSORS_INDEX_FILE, bytes, fn);
  let first: ByteSource | undefined = await dir.open(SAFETENSORS_SINGLE_FILE);
  if (!first) throw new Error(`${fn}: ${dir.name} holds neither ${SAFETENSORS_INDEX_FILE} nor ${SAFETENSORS_SINGLE_FILE}`);
  return {
    kind: 'single',
    file: {
      name: dir.pathOf(SAFETENSORS_SINGLE_FILE),
      open: async () => {
        const s = first;
        first = undefined;
        return s ?? mustOpen(dir, SAFETENSORS_SINGLE_FILE);
      },
    },
  };
}

/**
 * Where a checkpoint's tensors are: a local file or directory (exactly as before: `stat`, shard
 * names checked with Node's path module, symlinks followed), a URL (a folder when it ends in
 * `/`, an index when it ends in `.json`, else one file), a Blob, Files, a ModelDirectory.
 * Every shard name of an index is validated, wanted or not. @internal
 */
export async function resolveCheckpoint(source: SafetensorsSource, fn: string, opts?: UrlSourceOptions): Promise<ResolvedCheckpoint> {
  const c = await classifySource(source, fn);
  switch (c.kind) {
    case 'path':
      return resolvePath(c.path, fn);
    case 'blob': {
      const name = describeSource(c.blob);
      return { kind: 'single', file: { name, open: async () => blobSource(c.blob, name) } };
    }
    case 'url': {
      const url = c.url;
      if (url.pathname.endsWith('/')) return inFolder(urlDirectory(url, opts, fn), fn);
      if (url.pathname.toLowerCase().endsWith('.json')) {
        const dir = urlDirectory(urlFolderOf(url), opts, fn);
        const file = decodeURIComponent(url.pathname.slice(url.pathname.lastIndexOf('/') + 1));
        let bytes: Uint8Array | undefined;
        try {
          bytes = await dir.readFile(file);
        } catch (e) {
          throw new Error(`${fn}: cannot read ${url.href}: ${message(e)}`, { cause: e });
        }
        if (bytes === undefined) throw new Error(`${fn}: cannot read ${url.href}: not found (HTTP 404)`);
        return shardedIn(dir, file, bytes, fn);
      }
      return { kind: 'single', file: { name: url.href, open: () => openUrlFile(url, opts, fn) } };
    }
    case 'files':
      return inFolder(await toDirectory(c.files, fn), fn);
    case 'dir':
      return inFolder(c.dir, fn);
  }
}

async function resolvePath(path: string, fn: string): Promise<ResolvedCheckpoint> {
  const { fs, path: nodePath } = await nodeModules(fn, BROWSER_HINT);
  const k = await kind(path);
  if (k === 'file') return { kind: 'single', file: pathFile(path) };
  if (k === 'none') throw new Error(`${fn}: ${path} is neither a file nor a directory`);
  const dir = nodePath.resolve(path);
  const index = nodePath.join(dir, SAFETENSORS_INDEX_FILE);
  if ((await kind(index)) === 'none') {
    const single = nodePath.join(dir, SAFETENSORS_SINGLE_FILE);
    if ((await kind(single)) === 'none') {
      throw new Error(`${fn}: ${path} holds neither ${SAFETENSORS_INDEX_FILE} nor ${SAFETENSORS_SINGLE_FILE}`);
    }
    return { kind: 'single', file: pathFile(single) };
  }
  let text: string;
  try {
    const st = await fs.stat(index);
    if (st.size > SAFETENSORS_MAX_HEADER_BYTES) {
      throw new Error(`is ${st.size} bytes, over the limit of ${SAFETENSORS_MAX_HEADER_BYTES}`);
    }
    text = await fs.readFile(index, 'utf8');
  } catch (e) {
    throw new Error(`${fn}: cannot read ${index}: ${message(e)}`);
  }
  const { metadata, shards } = parseIndex(text, index, fn);
  const files = new Map<string, CheckpointFile>();
  const weightMap = new Map<string, CheckpointFile>();
  for (const [name, shard] of shards) {
    const file = shardPath(dir, shard, index, fn); // validate every entry, wanted or not
    let f = files.get(file);
    if (!f) files.set(file, (f = pathFile(file)));
    weightMap.set(name, f);
  }
  return { kind: 'sharded', index, metadata, weightMap };
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
