// What the sources are, for every runtime: a ByteSource is one file read by byte ranges, a
// ModelDirectory a checkpoint folder. The concrete sources (path.ts, files.ts, http.ts)
// implement these; callers see only these. (Line comments: a doc comment here would attach to
// ByteSource in the published types.)

/** One file, read by byte ranges. */
export interface ByteSource {
  /** What error messages call it: a path, a URL, a file name. */
  readonly name: string;
  /** Its size in bytes. */
  readonly size: number;
  /**
   * Exactly `length` bytes from `offset` (`offset + length ≤ size`); throws, naming the source,
   * when it cannot (a short read, a failed request, a truncated response).
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * How a reader should group the reads of several ranges: ranges at most `gapBytes` apart come
   * in one read of at most `maxBytes` (remote sources set it, so that neighbouring tensors come
   * in one request). Absent: one read per range.
   */
  readonly coalesce?: { readonly gapBytes: number; readonly maxBytes: number };
  /** Releases what the source holds (a Node file handle). */
  close?(): Promise<void>;
}

/**
 * A checkpoint folder: files by their path relative to it (`'config.json'`,
 * `'model-00001-of-00004.safetensors'`, `'../clip/config.json'`). Make one with
 * {@link openModelDirectory}, or implement it (e.g. over a cache or an authenticated store).
 */
export interface ModelDirectory {
  /** What error messages call the folder. */
  readonly name: string;
  /** What error messages call one of its files. */
  pathOf(file: string): string;
  /** Opens a file for ranged reads; undefined when there is no such file. Other failures throw. */
  open(file: string): Promise<ByteSource | undefined>;
  /** A whole (small) file's bytes; undefined when there is no such file. Other failures throw. */
  readFile(file: string): Promise<Uint8Array | undefined>;
  /**
   * Why `file`, which `open`/`readFile` did not find, is missing, for error messages
   * (`'not found (HTTP 404)'`). Optional: `'no such file'` when absent.
   */
  whyMissing?(file: string): string;
}

/**
 * The `File`s of a checkpoint folder, as an `<input type="file" webkitdirectory>` gives them
 * (a `FileList`) or as an array. Each is found by its `webkitRelativePath` (else its `name`);
 * when every path starts with the same folder (the picked one), paths are relative to it.
 */
export type ModelFiles = ArrayLike<File> | Iterable<File>;

/**
 * A checkpoint folder: a local directory (Node), an `http(s)` base URL (a string or a `URL`;
 * files resolve relative to it, a missing trailing `/` is added), the `File`s of a picked folder,
 * or a {@link ModelDirectory}. In a browser, a string that is not an absolute URL is resolved
 * against the page's address.
 */
export type CheckpointSource = string | URL | ModelFiles | ModelDirectory;

/**
 * What `loadSafetensors` reads: a `.safetensors` file or a checkpoint folder as a local path
 * (Node); an `http(s)` URL of a `.safetensors` file, of a `model.safetensors.index.json`, or of
 * a folder (ending in `/`); a `Blob`/`File`; the `File`s of a folder; a {@link ModelDirectory}.
 */
export type SafetensorsSource = CheckpointSource | Blob;

/** Options of the URL sources ({@link openByteSource}, {@link openModelDirectory}). */
export interface UrlSourceOptions {
  /** The `fetch` to use (default `globalThis.fetch`). */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  /** Headers sent with every request (e.g. `Authorization` for a gated model). */
  headers?: Record<string, string>;
  /** Largest single Range request; longer reads are split. Default 32 MiB. */
  maxRequestBytes?: number;
  /** Wanted ranges at most this far apart are fetched in one request (the gap is read and dropped). Default 0: only adjacent ranges. */
  coalesceGapBytes?: number;
  /**
   * A server that ignores Range requests (answers `200` with the whole file instead of `206`):
   * files up to this size are fetched whole, once per source, with a `console.warn` once per
   * URL; a larger one is an error naming the URL. Default 512 MiB.
   */
  maxWholeFileBytes?: number;
}

/** Default of {@link UrlSourceOptions.maxRequestBytes}. */
export const DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** Default of {@link UrlSourceOptions.maxWholeFileBytes}. */
export const DEFAULT_MAX_WHOLE_FILE_BYTES = 512 * 1024 * 1024;

/** A failure of a source; the message starts with the source's name. Loaders prefix their own name. @internal */
export class SourceError extends Error {
  override name = 'SourceError';
}

/** Why `file` is missing from `dir`, in words (the folder's own reason, else `'no such file'`). @internal */
export function missingWhy(dir: ModelDirectory, file: string): string {
  return typeof dir.whyMissing === 'function' ? dir.whyMissing(file) : 'no such file';
}

/** Whether `v` is a `Blob` (a `File` is one). @internal */
export function isBlob(v: unknown): v is Blob {
  return typeof Blob !== 'undefined' && v instanceof Blob;
}

/** Whether `v` is a `URL`. @internal */
export function isUrlObject(v: unknown): v is URL {
  return typeof URL !== 'undefined' && v instanceof URL;
}

/** Whether `v` is a {@link ModelDirectory} (duck-typed). @internal */
export function isModelDirectory(v: unknown): v is ModelDirectory {
  return typeof v === 'object' && v !== null && typeof (v as ModelDirectory).open === 'function' && typeof (v as ModelDirectory).readFile === 'function';
}

/** Whole-file bytes as UTF-8 text. @internal */
export function utf8Text(bytes: Uint8Array): string {
  return new TextDecoder('utf-8').decode(bytes);
}
