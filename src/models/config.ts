/**
 * Reading Hugging Face checkpoint directories: typed fields out of a parsed `config.json`
 * (no Node needed), and two small Node helpers that read a directory's `config.json` and
 * list its tensor names (from `model.safetensors.index.json`, or the header of
 * `model.safetensors`) without reading any tensor data.
 *
 * `node:fs/promises` and `node:path` are imported lazily, on the first call of a Node helper.
 */
import { SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE } from '../io/loadSafetensors.js';
import { message, nodeModules } from '../io/nodeFiles.js';
import { parseSafetensorsHeader, readSafetensorsHeaderLength } from '../io/safetensors.js';

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
// Node helpers


/** The config file of a Hugging Face checkpoint directory. */
export const CONFIG_FILE = 'config.json';

/** Reads and parses `dir/config.json` (Node only); the error names the file, and `fn` (the caller) first. */
export async function readConfigJson(dir: string, fn = 'readConfigJson'): Promise<JsonObject> {
  const { fs, path: nodePath } = await nodeModules(fn, BROWSER_HINT);
  const file = nodePath.join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`${fn}: cannot read ${file}: ${message(e)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${fn}: ${file}: not valid JSON: ${message(e)}`);
  }
  if (!isJsonObject(json)) throw new Error(`${fn}: ${file}: must be a JSON object`);
  return json;
}

/**
 * The tensor names of the checkpoint in `dir` (Node only), without reading tensor data: the
 * keys of `model.safetensors.index.json`'s weight map when there is one, else the header of
 * `model.safetensors`.
 */
export async function listCheckpointTensorNames(dir: string): Promise<string[]> {
  const fn = 'listCheckpointTensorNames';
  const { fs, path: nodePath } = await nodeModules(fn, BROWSER_HINT);
  const index = nodePath.join(dir, SAFETENSORS_INDEX_FILE);
  let indexText: string | undefined;
  try {
    indexText = await fs.readFile(index, 'utf8');
  } catch {
    indexText = undefined;
  }
  if (indexText !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(indexText);
    } catch (e) {
      throw new Error(`${fn}: ${index}: not valid JSON: ${message(e)}`);
    }
    const map = isJsonObject(json) ? json.weight_map : undefined;
    if (!isJsonObject(map)) throw new Error(`${fn}: ${index}: "weight_map" must be an object of tensor name -> shard file`);
    return Object.keys(map);
  }
  const file = nodePath.join(dir, SAFETENSORS_SINGLE_FILE);
  let fh: import('node:fs/promises').FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (e) {
    throw new Error(`${fn}: ${dir} holds neither ${SAFETENSORS_INDEX_FILE} nor a readable ${SAFETENSORS_SINGLE_FILE}: ${message(e)}`);
  }
  try {
    const size = (await fh.stat()).size;
    const ctx = `${fn}: ${file}`;
    const first = new Uint8Array(8);
    const { bytesRead } = await fh.read(first, 0, 8, 0);
    const n = readSafetensorsHeaderLength(first.subarray(0, bytesRead), size, ctx);
    const header = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      const r = await fh.read(header, done, n - done, 8 + done);
      if (r.bytesRead === 0) throw new Error(`${ctx}: unexpected end of file in the header`);
      done += r.bytesRead;
    }
    return parseSafetensorsHeader(header, size, ctx).entries.map((e) => e.name);
  } finally {
    await fh.close().catch(() => undefined);
  }
}
