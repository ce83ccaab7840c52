/**
 * Loading safetensors checkpoints from disk (Node only): single files, directories with a
 * `model.safetensors`, and Hugging Face sharded checkpoints (`model.safetensors.index.json`),
 * optionally only the tensors under some name prefixes, read with positioned reads.
 *
 * `node:fs/promises` and `node:path` are imported lazily, on the first call: importing this
 * module (or the package index) in a browser costs nothing and fails nothing.
 */
import type { Tensor } from '@tensorflow/tfjs-core';
import { isPlainObject, message, nodeModules, pathKind as kind, readExactly, shardPath, type FileHandle } from './nodeFiles.js';
import {
  SAFETENSORS_MAX_HEADER_BYTES,
  decodeTensorValues,
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  tensorFromDecoded,
  tensorLabel,
  type SafetensorsContents,
} from './safetensors.js';

/** The index file of a sharded Hugging Face checkpoint. */
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';
/** The single-file checkpoint looked for in a directory without an index. */
export const SAFETENSORS_SINGLE_FILE = 'model.safetensors';

/** Options of {@link loadSafetensors}. */
export interface LoadSafetensorsOptions {
  /**
   * Load only the tensors whose names start with this prefix (or with one of these). Only the
   * header and the byte ranges of those tensors are read. Default: every tensor.
   */
  prefix?: string | readonly string[];
}

const FN = 'loadSafetensors';
const BROWSER_HINT = 'use readSafetensors on fetched bytes';




/**
 * Reads the tensors of one file that `want(name)` selects: the 8-byte length, the header, then
 * only the selected byte ranges. Pushes every tensor it makes onto `made` (for cleanup).
 * @returns The file's `__metadata__` and the names it found.
 */
async function loadFile(
  file: string,
  want: (name: string) => boolean,
  into: Record<string, Tensor>,
  made: Tensor[],
): Promise<{ metadata: Record<string, string>; names: string[] }> {
  const ctx = `${FN}: ${file}`;
  const { fs } = await nodeModules(FN, BROWSER_HINT);
  let fh: FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (e) {
    throw new Error(`${FN}: cannot open ${file}: ${message(e)}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(`${ctx}: not a regular file`);
    const size = st.size;
    const first = await readExactly(fh, Math.min(8, size), 0, ctx);
    const n = readSafetensorsHeaderLength(first, size, ctx);
    const header = parseSafetensorsHeader(await readExactly(fh, n, 8, ctx), size, ctx);
    const selected = header.entries.filter((e) => want(e.name)).sort((a, b) => a.begin - b.begin);
    for (const e of selected) {
      const bytes = await readExactly(fh, e.end - e.begin, header.dataOffset + e.begin, ctx);
      const t = tensorFromDecoded(e.name, decodeTensorValues(e, bytes, ctx), ctx);
      made.push(t);
      into[e.name] = t;
    }
    return { metadata: header.metadata, names: header.entries.map((e) => e.name) };
  } finally {
    await fh.close().catch(() => undefined);
  }
}


interface ShardIndex {
  metadata: Record<string, string>;
  weightMap: Map<string, string>;
}

async function readIndex(index: string): Promise<ShardIndex> {
  const { fs } = await nodeModules(FN, BROWSER_HINT);
  let text: string;
  try {
    const st = await fs.stat(index);
    if (st.size > SAFETENSORS_MAX_HEADER_BYTES) {
      throw new Error(`is ${st.size} bytes, over the limit of ${SAFETENSORS_MAX_HEADER_BYTES}`);
    }
    text = await fs.readFile(index, 'utf8');
  } catch (e) {
    throw new Error(`${FN}: cannot read ${index}: ${message(e)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${FN}: ${index}: not valid JSON: ${message(e)}`);
  }
  if (!isPlainObject(json)) throw new Error(`${FN}: ${index}: must be a JSON object`);
  const map = json.weight_map;
  if (!isPlainObject(map)) throw new Error(`${FN}: ${index}: "weight_map" must be an object of tensor name -> shard file`);
  const weightMap = new Map<string, string>();
  for (const name of Object.keys(map)) {
    const shard = map[name];
    if (typeof shard !== 'string') throw new Error(`${FN}: ${index}: weight_map ${tensorLabel(name)}: shard must be a string`);
    weightMap.set(name, shard);
  }
  const metadata: Record<string, string> = Object.create(null);
  if (json.metadata !== undefined && json.metadata !== null) {
    if (!isPlainObject(json.metadata)) throw new Error(`${FN}: ${index}: "metadata" must be an object`);
    for (const key of Object.keys(json.metadata)) {
      const v = json.metadata[key];
      metadata[key] = typeof v === 'string' ? v : JSON.stringify(v);
    }
  }
  return { metadata, weightMap };
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
 * Loads a safetensors checkpoint from disk (Node only).
 *
 * `path` is a safetensors file, or a directory holding either `model.safetensors.index.json`
 * (a Hugging Face sharded checkpoint: `{"metadata": {...}, "weight_map": {name: shardFile}}`)
 * or a single `model.safetensors`. Shard file names must stay inside the directory (absolute
 * paths and `..` escapes are refused; symlinks inside it are followed, as in the Hugging Face
 * cache). From each shard, only the tensors the weight map assigns to it are loaded; a tensor
 * missing from its shard is an error.
 *
 * Every file's header is read and validated exactly as `readSafetensors` does; then only
 * the byte ranges of the selected tensors are read, with positioned reads (the whole file is
 * never read at once). Dtypes map as in `readSafetensors` (U8 → int32, BOOL → bool,
 * I64 → int32 range-checked). On any error, every tensor made so far is disposed and an error
 * whose message starts `loadSafetensors:` (naming the file, the tensor and the problem) is thrown.
 *
 * @param path A `.safetensors` file or a checkpoint directory.
 * @param opts `prefix`: load only tensors whose names start with it (or one of them).
 * @returns The tensors by name, and metadata: a single file's `__metadata__`, or for a sharded
 * checkpoint the index's `"metadata"` (non-string values JSON-stringified, e.g. `total_size`).
 */
export async function loadSafetensors(path: string, opts?: LoadSafetensorsOptions): Promise<SafetensorsContents> {
  if (typeof path !== 'string' || path === '') throw new Error(`${FN}: path must be a non-empty string, got ${JSON.stringify(path)}`);
  const want = prefixFilter(opts);
  const { path: nodePath } = await nodeModules(FN, BROWSER_HINT);
  const tensors: Record<string, Tensor> = Object.create(null);
  const made: Tensor[] = [];
  try {
    const k = await kind(path);
    if (k === 'file') {
      const { metadata } = await loadFile(path, want, tensors, made);
      return { tensors, metadata };
    }
    if (k === 'none') throw new Error(`${FN}: ${path} is neither a file nor a directory`);
    const dir = nodePath.resolve(path);
    const index = nodePath.join(dir, SAFETENSORS_INDEX_FILE);
    if ((await kind(index)) === 'none') {
      const single = nodePath.join(dir, SAFETENSORS_SINGLE_FILE);
      if ((await kind(single)) === 'none') {
        throw new Error(`${FN}: ${path} holds neither ${SAFETENSORS_INDEX_FILE} nor ${SAFETENSORS_SINGLE_FILE}`);
      }
      const { metadata } = await loadFile(single, want, tensors, made);
      return { tensors, metadata };
    }
    const { metadata, weightMap } = await readIndex(index);
    // Shards in first-mention order, each with the wanted names the index assigns to it.
    const shards = new Map<string, Set<string>>();
    for (const [name, shard] of weightMap) {
      const file = shardPath(dir, shard, index, FN); // validate every entry, wanted or not
      if (!want(name)) continue;
      let names = shards.get(file);
      if (!names) shards.set(file, (names = new Set()));
      names.add(name);
    }
    for (const [file, names] of shards) {
      const found = await loadFile(file, (n) => names.has(n), tensors, made);
      const present = new Set(found.names);
      for (const name of names) {
        if (!present.has(name)) throw new Error(`${FN}: ${file}: ${tensorLabel(name)} is listed in ${SAFETENSORS_INDEX_FILE} but missing from this shard`);
      }
    }
    return { tensors, metadata };
  } catch (e) {
    for (const t of made) t.dispose();
    if (e instanceof Error && e.message.startsWith(`${FN}:`)) throw e;
    throw new Error(`${FN}: ${path}: ${message(e)}`);
  }
}
