/**
 * Raw reads of a safetensors checkpoint: {@link listSafetensorsEntries} lists every tensor from
 * the headers alone, {@link loadSafetensorsRaw} reads the selected tensors' bytes — undecoded —
 * into a {@link LazyWeights} store. Sources: a local path (Node), a URL (HTTP Range requests), a
 * Blob/File or Files (single files, directories, sharded Hugging Face checkpoints). No Node
 * built-in is imported (see io/nodeFiles.ts).
 */
import { LazyWeights } from './lazyWeights.js';
import { SAFETENSORS_INDEX_FILE, describeSource, loaderError, readHeaderFrom, resolveCheckpoint, type CheckpointFile } from './loadSafetensors.js';
import { tensorLabel, type SafetensorsEntry, type SafetensorsHeader } from './safetensors.js';
import { readRanges, type SafetensorsSource } from './sources/index.js';

/** A tensor's location in a checkpoint: its file and validated header entry. */
export interface CheckpointEntry {
  /** The file, as messages name it: a path, a URL, a file name. */
  file: string;
  entry: SafetensorsEntry;
  /** Absolute offset of the file's data section. */
  dataOffset: number;
}

/** The file each listed entry came from (to read its bytes). */
const entryFiles = new WeakMap<CheckpointEntry, CheckpointFile>();

/**
 * Every tensor of a checkpoint with its dtype, shape and location, from the headers only (no
 * tensor data is read). `source`: a `.safetensors` file, or a folder holding
 * `model.safetensors.index.json` (sharded) or `model.safetensors`, as a local path (Node), a URL,
 * a Blob/File or Files (see {@link SafetensorsSource}). For a sharded checkpoint only the tensors
 * the index assigns to a shard are listed from it; one missing there is an error.
 */
export async function listSafetensorsEntries(source: SafetensorsSource): Promise<{ entries: Map<string, CheckpointEntry>; metadata: Record<string, string> }> {
  const fn = 'listSafetensorsEntries';
  const entries = new Map<string, CheckpointEntry>();
  try {
    const r = await resolveCheckpoint(source, fn);
    const addFile = async (file: CheckpointFile, names?: Set<string>) => {
      const src = await file.open();
      let h: SafetensorsHeader;
      try {
        h = await readHeaderFrom(src, `${fn}: ${file.name}`);
      } finally {
        await src.close?.();
      }
      const present = new Set<string>();
      for (const e of h.entries) {
        present.add(e.name);
        if (names && !names.has(e.name)) continue;
        const ce: CheckpointEntry = { file: file.name, entry: e, dataOffset: h.dataOffset };
        entryFiles.set(ce, file);
        entries.set(e.name, ce);
      }
      if (names) for (const n of names) if (!present.has(n)) throw new Error(`${fn}: ${file.name}: ${tensorLabel(n)} is listed in ${SAFETENSORS_INDEX_FILE} but missing from this shard`);
      return h.metadata;
    };
    if (r.kind === 'single') return { entries, metadata: await addFile(r.file) };
    const shards = new Map<CheckpointFile, Set<string>>();
    for (const [name, file] of r.weightMap) {
      let names = shards.get(file);
      if (!names) shards.set(file, (names = new Set()));
      names.add(name);
    }
    for (const [file, names] of shards) await addFile(file, names);
    return { entries, metadata: r.metadata };
  } catch (e) {
    throw loaderError(fn, e, describeSource(source));
  }
}

/** Options of {@link loadSafetensorsRaw}. */
export interface LoadSafetensorsRawOptions {
  /** Keep only tensors whose names start with this prefix (or one of these). */
  prefix?: string | readonly string[];
  /** Keep only tensors this accepts (applied with `prefix`). */
  filter?: (name: string) => boolean;
  /**
   * Called with each tensor's name as soon as its bytes are in the store, before the next one
   * is read: e.g. `(name, weights) => weights.quantize(name, 'q4')`, so that the checkpoint
   * bytes of only one tensor at a time are held beside the quantised ones.
   */
  onTensor?: (name: string, weights: LazyWeights) => void;
}

/**
 * Reads the raw bytes of a checkpoint's tensors into a {@link LazyWeights} store, from a local
 * path (Node), a URL, a Blob/File or Files (see {@link SafetensorsSource}): headers first
 * (validated as `readSafetensors` does), then only the selected tensors' byte ranges — positioned
 * reads of a local file, each into its own buffer; HTTP Range requests for a URL (adjacent
 * tensors in one request). Nothing is decoded: a bf16 checkpoint costs its file size in memory,
 * not twice that.
 */
export async function loadSafetensorsRaw(source: SafetensorsSource, opts: LoadSafetensorsRawOptions = {}): Promise<{ weights: LazyWeights; metadata: Record<string, string> }> {
  const fn = 'loadSafetensorsRaw';
  const prefixes = opts.prefix === undefined ? undefined : typeof opts.prefix === 'string' ? [opts.prefix] : [...opts.prefix];
  const want = (name: string) => (!prefixes || prefixes.some((p) => name.startsWith(p))) && (!opts.filter || opts.filter(name));
  const { entries, metadata } = await listSafetensorsEntries(source);
  const byFile = new Map<CheckpointFile, CheckpointEntry[]>();
  for (const [name, ce] of entries) {
    if (!want(name)) continue;
    const file = entryFiles.get(ce)!;
    let list = byFile.get(file);
    if (!list) byFile.set(file, (list = []));
    list.push(ce);
  }
  const weights = new LazyWeights();
  try {
    for (const [file, list] of byFile) {
      const src = await file.open();
      try {
        const ranges = list.map((ce) => ({ offset: ce.dataOffset + ce.entry.begin, length: ce.entry.end - ce.entry.begin, entry: ce.entry }));
        for await (const [{ entry: e }, bytes] of readRanges(src, ranges)) {
          weights.set(e.name, { dtype: e.dtype, shape: e.shape, bytes });
          opts.onTensor?.(e.name, weights);
        }
      } finally {
        await src.close?.();
      }
    }
  } catch (e) {
    weights.dispose();
    throw loaderError(fn, e, describeSource(source));
  }
  return { weights, metadata };
}
