/**
 * Where a checkpoint's tensors are in a folder: a Hugging Face shard index
 * (`model.safetensors.index.json`) or one `model.safetensors`. Any {@link ModelDirectory} gets
 * {@link inFolder}; a folder with rules of its own (a local one: Node's path rules) supplies
 * them under {@link FIND_CHECKPOINT}.
 */
import { errorMessage as message, isPlainObject } from '../../util/format.js';
import { SAFETENSORS_MAX_HEADER_BYTES, tensorLabel } from '../safetensors.js';
import { SourceError, missingWhy, utf8Text, type ByteSource, type ModelDirectory } from './types.js';

/** The index file of a sharded Hugging Face checkpoint. */
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';
/** The single-file checkpoint looked for in a directory without an index. */
export const SAFETENSORS_SINGLE_FILE = 'model.safetensors';

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

/**
 * The key of a folder's own checkpoint finder. A symbol from the global registry, so that a
 * folder made by another copy of this module (the CJS and ESM builds) keeps its rules.
 * @internal
 */
export const FIND_CHECKPOINT: unique symbol = Symbol.for('inf-llava.findCheckpoint');

/** A folder that finds its checkpoint by its own rules. @internal */
export interface FindsCheckpoint {
  [FIND_CHECKPOINT](fn: string): Promise<ResolvedCheckpoint>;
}

/** The checkpoint in `dir`: by its own rules when it has them, else {@link inFolder}. @internal */
export function checkpointIn(dir: ModelDirectory, fn: string): Promise<ResolvedCheckpoint> {
  const own = (dir as Partial<FindsCheckpoint>)[FIND_CHECKPOINT];
  return typeof own === 'function' ? own.call(dir, fn) : inFolder(dir, fn);
}

/** An index's metadata and tensor → shard-name map; errors name `index`. @internal */
export function parseIndex(text: string, index: string, fn: string): { metadata: Record<string, string>; shards: Map<string, string> } {
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
  if (!src) throw new SourceError(`cannot open ${dir.pathOf(file)}: ${missingWhy(dir, file)}`);
  return src;
}

/** A sharded checkpoint's index in a folder (its bytes read): its shards resolved in the folder. @internal */
export async function shardedIn(dir: ModelDirectory, indexFile: string, bytes: Uint8Array, fn: string): Promise<ResolvedCheckpoint> {
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

/** A folder: its index when there is one, else its `model.safetensors`. @internal */
export async function inFolder(dir: ModelDirectory, fn: string): Promise<ResolvedCheckpoint> {
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
      // The source opened to look is the one the first reader gets.
      open: async () => {
        const s = first;
        first = undefined;
        return s ?? mustOpen(dir, SAFETENSORS_SINGLE_FILE);
      },
    },
  };
}
