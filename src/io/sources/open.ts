/**
 * What the caller passed, classified once and opened: as one file ({@link openByteSource}), a
 * folder ({@link toDirectory}) or a checkpoint ({@link resolveCheckpoint}). A
 * {@link ModelDirectory} is already classified: it passes through as it is.
 */
import { isNode, nodeBuiltin, nodeModules } from '../nodeFiles.js';
import { checkpointIn, inFolder, type ResolvedCheckpoint } from './checkpoint.js';
import { blobSource, filesDirectory, filesOf } from './files.js';
import { openUrlFile, resolveUrl, urlDirectory } from './http.js';
import { localPathOf, openPathFile, pathDirectory, resolvePath } from './path.js';
import {
  SourceError,
  isBlob,
  isModelDirectory,
  isUrlObject,
  type ByteSource,
  type CheckpointSource,
  type ModelDirectory,
  type SafetensorsSource,
  type UrlSourceOptions,
} from './types.js';

/** `s` as an absolute URL when it names one (`http:`, `https:`, `file:`), or in a browser any string resolved against the page. */
function urlOfString(s: string): URL | undefined {
  if (/^(https?|file):/i.test(s)) return new URL(s);
  if (!isNode()) {
    const here = (globalThis as { location?: { href?: string } }).location?.href;
    if (typeof here === 'string') return new URL(s, here);
  }
  return undefined;
}

function checkScheme(url: URL, fn: string): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:' && url.protocol !== 'file:') {
    throw new Error(`${fn}: ${url.href}: unsupported URL scheme ${url.protocol} (http:, https: or file:)`);
  }
}

async function fileUrlToPath(url: URL): Promise<string> {
  const { fileURLToPath } = await nodeBuiltin<typeof import('node:url')>('node:url');
  return fileURLToPath(url);
}

/** What the caller passed, sorted. */
type Classified =
  | { kind: 'path'; path: string }
  | { kind: 'url'; url: URL }
  | { kind: 'blob'; blob: Blob }
  | { kind: 'files'; files: File[] }
  | { kind: 'dir'; dir: ModelDirectory };

/** Sorts a source; `file:` URLs become paths. */
async function classify(source: unknown, fn: string): Promise<Classified> {
  if (typeof source === 'string') {
    if (source === '') throw new Error(`${fn}: path must be a non-empty string, got ""`);
    const url = urlOfString(source);
    if (!url) return { kind: 'path', path: source };
    checkScheme(url, fn);
    return url.protocol === 'file:' ? { kind: 'path', path: await fileUrlToPath(url) } : { kind: 'url', url };
  }
  if (isUrlObject(source)) {
    checkScheme(source, fn);
    return source.protocol === 'file:' ? { kind: 'path', path: await fileUrlToPath(source) } : { kind: 'url', url: new URL(source.href) };
  }
  // Folders pass toDirectory and resolveCheckpoint untouched; only openByteSource sees one
  // here, and a local one is opened (and refused) by its path.
  const local = localPathOf(source);
  if (local !== undefined) return { kind: 'path', path: local };
  if (isBlob(source)) return { kind: 'blob', blob: source };
  if (isModelDirectory(source)) return { kind: 'dir', dir: source };
  const files = filesOf(source, fn);
  if (files) return { kind: 'files', files };
  const got = source === null ? 'null' : typeof source === 'object' ? Object.prototype.toString.call(source) : typeof source;
  throw new Error(`${fn}: expected a path, a URL, a Blob/File, Files or a ModelDirectory, got ${got}`);
}

/** A folder made here or by the caller (a Blob with `open`/`readFile` is still a Blob). */
function asDirectory(source: unknown): ModelDirectory | undefined {
  return isModelDirectory(source) && !isBlob(source) ? source : undefined;
}

/** A source in words, for messages. @internal */
export function describeSource(source: unknown): string {
  if (typeof source === 'string') return source;
  if (isUrlObject(source)) return source.href;
  if (isBlob(source)) {
    const name = (source as { name?: unknown }).name;
    return typeof name === 'string' && name !== '' ? name : `Blob (${source.size} bytes)`;
  }
  const name = (source as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : 'files';
}

/**
 * Opens one file for ranged reads: a local path (Node), an `http(s)` URL (string or `URL`; the
 * first request, `Range: bytes=0-7`, gives the size), or a `Blob`/`File`. Close it when done
 * (`await source.close?.()`).
 */
export async function openByteSource(source: string | URL | Blob, opts: UrlSourceOptions = {}): Promise<ByteSource> {
  const fn = 'openByteSource';
  const c = await classify(source, fn);
  try {
    switch (c.kind) {
      case 'path':
        await nodeModules(fn, 'pass a URL or a Blob/File');
        return await openPathFile(c.path);
      case 'url':
        return await openUrlFile(c.url, opts, fn);
      case 'blob':
        return blobSource(c.blob);
      default:
        throw new Error(`${fn}: expected one file (a path, a URL or a Blob/File), got a folder`);
    }
  } catch (e) {
    throw e instanceof SourceError ? new SourceError(`${fn}: ${e.message}`, { cause: e }) : e;
  }
}

/**
 * A {@link ModelDirectory} for a checkpoint folder: a local directory (Node), an `http(s)` base
 * URL (a trailing `/` is added when missing), or the `File`s of a picked folder. Pass it to the
 * loaders in place of the folder, to share one set of URL options or to reuse what was fetched
 * (a URL folder fetches each file's first bytes once).
 */
export async function openModelDirectory(source: CheckpointSource, opts: UrlSourceOptions = {}): Promise<ModelDirectory> {
  return toDirectory(source, 'openModelDirectory', 'pass a URL or Files', opts);
}

/** A folder source as a {@link ModelDirectory} (a ModelDirectory itself, unchanged); `fn` and `hint` go into errors. @internal */
export async function toDirectory(source: unknown, fn: string, hint = 'pass a URL or Files', opts?: UrlSourceOptions): Promise<ModelDirectory> {
  const dir = asDirectory(source);
  if (dir) return dir;
  const c = await classify(source, fn);
  switch (c.kind) {
    case 'path':
      return pathDirectory(c.path, fn, hint);
    case 'url':
      return urlDirectory(c.url, opts, fn);
    case 'files':
      return filesDirectory(c.files, fn);
    case 'dir':
      return c.dir;
    case 'blob':
      throw new Error(`${fn}: a Blob/File is one file; pass a folder: a path, a base URL, or the Files of a picked folder`);
  }
}

/**
 * Where a checkpoint's tensors are: a folder (a {@link ModelDirectory} as it is, by its own
 * rules), a local file or directory, a URL (a folder when it ends in `/`, an index when it ends
 * in `.json`, else one file), a Blob, Files. Every shard name of an index is validated, wanted
 * or not. @internal
 */
export async function resolveCheckpoint(source: SafetensorsSource, fn: string, opts?: UrlSourceOptions): Promise<ResolvedCheckpoint> {
  const dir = asDirectory(source);
  if (dir) return checkpointIn(dir, fn);
  const c = await classify(source, fn);
  switch (c.kind) {
    case 'path':
      return resolvePath(c.path, fn);
    case 'blob': {
      const name = describeSource(c.blob);
      return { kind: 'single', file: { name, open: async () => blobSource(c.blob, name) } };
    }
    case 'url':
      return resolveUrl(c.url, opts, fn);
    case 'files':
      return inFolder(filesDirectory(c.files, fn), fn);
    case 'dir':
      return checkpointIn(c.dir, fn);
  }
}
