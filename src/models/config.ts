/**
 * Reading Hugging Face checkpoint directories: typed fields out of a parsed `config.json`, and
 * two small helpers that read a folder's `config.json` and list its tensor names (from
 * `model.safetensors.index.json`, or the header of `model.safetensors`) without reading any
 * tensor data. A folder is a local path (Node), a URL or Files (see io/sources/).
 */
import { SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE, describeSource, loaderError, readHeaderFrom, resolveCheckpoint } from '../io/loadSafetensors.js';
import { errorMessage as message } from '../util/format.js';
import { missingWhy, toDirectory, utf8Text, type CheckpointSource, type ModelDirectory } from '../io/sources/index.js';

const BROWSER_HINT = 'parse the fetched JSON yourself';

/** A parsed JSON object. */
export type JsonObject = Record<string, unknown>;

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads typed fields of one config object, with defaults for absent (or `null`) fields;
 * a present field of the wrong type is an error naming `where` and the field.
 */
export class ConfigReader {
  constructor(
    readonly json: JsonObject,
    /** Names the object in errors, e.g. `'clipVisionConfigFromJson: vision_config'`. */
    readonly where: string,
  ) {}

  private value(key: string): unknown {
    return Object.prototype.hasOwnProperty.call(this.json, key) ? this.json[key] : undefined;
  }

  private fail(key: string, want: string, v: unknown): never {
    throw new Error(`${this.where}: "${key}" must be ${want}, got ${JSON.stringify(v)}`);
  }

  has(key: string): boolean {
    const v = this.value(key);
    return v !== undefined && v !== null;
  }

  /** A positive integer (`min` 1 by default). */
  int(key: string, fallback: number, min = 1): number {
    const v = this.value(key) ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) this.fail(key, `an integer >= ${min}`, v);
    return v;
  }

  /** A positive integer, or a square `[n, n]` (transformers 5 allows lists for image/patch sizes). */
  squareInt(key: string, fallback: number): number {
    const v = this.value(key) ?? fallback;
    if (Array.isArray(v)) {
      if (v.length !== 2 || v[0] !== v[1]) this.fail(key, 'an integer or a square [n, n]', v);
      return new ConfigReader({ [key]: v[0] }, this.where).int(key, fallback);
    }
    return this.int(key, fallback);
  }

  /** A finite number > 0. */
  positive(key: string, fallback: number): number {
    const v = this.value(key) ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, 'a finite number > 0', v);
    return v;
  }

  string(key: string, fallback: string): string {
    const v = this.value(key) ?? fallback;
    if (typeof v !== 'string') this.fail(key, 'a string', v);
    return v;
  }

  /** A nested object, or undefined when absent. */
  object(key: string): JsonObject | undefined {
    const v = this.value(key);
    if (v === undefined || v === null) return undefined;
    if (!isJsonObject(v)) this.fail(key, 'an object', v);
    return v;
  }
}

// ---------------------------------------------------------------------------------------
// Reading a checkpoint folder (a local directory, a URL, Files)


/** The config file of a Hugging Face checkpoint directory. */
export const CONFIG_FILE = 'config.json';

/** `e`'s message without a leading `"<name>: "`. */
function without(name: string, e: unknown): string {
  const m = message(e);
  return m.startsWith(`${name}: `) ? m.slice(name.length + 2) : m;
}

/**
 * Reads a whole file of a folder; the error names `fn` and the file (`cannot read <file>: why`).
 * @param required When false, a missing file gives undefined.
 */
export async function readDirFile(dir: ModelDirectory, file: string, fn: string, required = true): Promise<Uint8Array | undefined> {
  const p = dir.pathOf(file);
  let bytes: Uint8Array | undefined;
  try {
    bytes = await dir.readFile(file);
  } catch (e) {
    throw new Error(`${fn}: cannot read ${p}: ${without(p, e)}`, { cause: e });
  }
  if (bytes === undefined && required) throw new Error(`${fn}: cannot read ${p}: ${missingWhy(dir, file)}`);
  return bytes;
}

/** Parses a JSON object out of a file's bytes; errors name `fn` and `where`. */
export function parseJsonObject(bytes: Uint8Array, where: string, fn: string): JsonObject {
  let json: unknown;
  try {
    json = JSON.parse(utf8Text(bytes));
  } catch (e) {
    throw new Error(`${fn}: ${where}: not valid JSON: ${message(e)}`);
  }
  if (!isJsonObject(json)) throw new Error(`${fn}: ${where}: must be a JSON object`);
  return json;
}

/**
 * Reads and parses `config.json` (or `file`) of a checkpoint folder: a local path (Node), a URL,
 * Files or a ModelDirectory; the error names the file, and `fn` (the caller) first.
 */
export async function readConfigJson(source: CheckpointSource, fn = 'readConfigJson', file = CONFIG_FILE): Promise<JsonObject> {
  const dir = await toDirectory(source, fn, BROWSER_HINT);
  const bytes = (await readDirFile(dir, file, fn))!;
  return parseJsonObject(bytes, dir.pathOf(file), fn);
}

/**
 * The tensor names of the checkpoint in a folder (a local path, a URL, Files), without reading
 * tensor data: the keys of `model.safetensors.index.json`'s weight map when there is one, else
 * the header of `model.safetensors`.
 */
export async function listCheckpointTensorNames(source: CheckpointSource): Promise<string[]> {
  const fn = 'listCheckpointTensorNames';
  try {
    const r = await resolveCheckpoint(await toDirectory(source, fn, BROWSER_HINT), fn);
    if (r.kind === 'sharded') return [...r.weightMap.keys()];
    const src = await r.file.open();
    try {
      return (await readHeaderFrom(src, `${fn}: ${r.file.name}`)).entries.map((e) => e.name);
    } finally {
      await src.close?.();
    }
  } catch (e) {
    const err = loaderError(fn, e, describeSource(source));
    // This reader's wording since its first version: "... nor a readable model.safetensors".
    const holds = ` holds neither ${SAFETENSORS_INDEX_FILE} nor ${SAFETENSORS_SINGLE_FILE}`;
    if (err.message.endsWith(holds)) err.message = err.message.replace(holds, ` holds neither ${SAFETENSORS_INDEX_FILE} nor a readable ${SAFETENSORS_SINGLE_FILE}`);
    throw err;
  }
}
