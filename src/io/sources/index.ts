/**
 * Where checkpoint bytes come from, in any JavaScript runtime: a {@link ByteSource} is one file
 * read by byte ranges (a local path in Node, an `http(s)` URL read with HTTP Range requests, a
 * `Blob`/`File`), a {@link ModelDirectory} a checkpoint folder (a local directory, a base URL,
 * the `File`s of a folder picked in a browser). The loaders (`loadSafetensors`, `loadTokenizer`,
 * `loadClipVision`, `loadLlama`, `loadInfLlava`) take any of these.
 *
 * One file per source (path.ts, files.ts, http.ts); open.ts classifies what the caller passed,
 * once; callers see only the interfaces of types.ts. Nothing here imports a Node built-in: local
 * paths are read through `process.getBuiltinModule` (see ../nodeFiles.ts), so bundling the
 * library for a browser pulls in no Node module.
 */
export {
  DEFAULT_MAX_REQUEST_BYTES,
  DEFAULT_MAX_WHOLE_FILE_BYTES,
  SourceError,
  isModelDirectory,
  missingWhy,
  utf8Text,
  type ByteSource,
  type CheckpointSource,
  type ModelDirectory,
  type ModelFiles,
  type SafetensorsSource,
  type UrlSourceOptions,
} from './types.js';
export { readRanges, type ByteRange } from './ranges.js';
export { SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE, type CheckpointFile, type ResolvedCheckpoint } from './checkpoint.js';
export { describeSource, openByteSource, openModelDirectory, resolveCheckpoint, toDirectory } from './open.js';
