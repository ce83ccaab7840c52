/**
 * Where checkpoint bytes come from, in any JavaScript runtime: a {@link ByteSource} is one file
 * read by byte ranges (a local path in Node, an `http(s)` URL read with HTTP Range requests, a
 * `Blob`/`File`), a {@link ModelDirectory} a checkpoint folder (a local directory, a base URL,
 * the `File`s of a folder picked in a browser). The loaders (`loadSafetensors`, `loadTokenizer`,
 * `loadClipVision`, `loadLlama`, `loadInfLlava`) take any of these.
 *
 * Nothing here imports a Node built-in: local paths are read through `process.getBuiltinModule`
 * (see nodeFiles.ts), so bundling the library for a browser pulls in no Node module.
 */
import { errorMessage as message } from '../util/format.js';
import { isNode, nodeBuiltin, nodeModules, readExactly, type FileHandle } from './nodeFiles.js';

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

// ---------------------------------------------------------------------------------------
// Classifying what the caller passed

function isBlob(v: unknown): v is Blob {
  return typeof Blob !== 'undefined' && v instanceof Blob;
}

/** Whether `v` is a {@link ModelDirectory} (duck-typed). */
export function isModelDirectory(v: unknown): v is ModelDirectory {
  return typeof v === 'object' && v !== null && typeof (v as ModelDirectory).open === 'function' && typeof (v as ModelDirectory).readFile === 'function';
}

function isUrlObject(v: unknown): v is URL {
  return typeof URL !== 'undefined' && v instanceof URL;
}

/** The `File`s of `v` when it is a list of them, else undefined (a list holding anything else throws). */
function filesOf(v: unknown, fn: string): File[] | undefined {
  if (typeof v !== 'object' || v === null || isBlob(v) || isUrlObject(v)) return undefined;
  let list: unknown[];
  if (typeof (v as Iterable<unknown>)[Symbol.iterator] === 'function') list = [...(v as Iterable<unknown>)];
  else if (typeof (v as ArrayLike<unknown>).length === 'number') list = Array.from(v as ArrayLike<unknown>);
  else return undefined;
  list.forEach((f, i) => {
    if (!isBlob(f) || typeof (f as File).name !== 'string') throw new Error(`${fn}: files[${i}] is not a File`);
  });
  return list as File[];
}

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

/** What the caller passed, sorted. @internal */
export type Classified =
  | { kind: 'path'; path: string }
  | { kind: 'url'; url: URL }
  | { kind: 'blob'; blob: Blob }
  | { kind: 'files'; files: File[] }
  | { kind: 'dir'; dir: ModelDirectory };

/** Sorts a source; `file:` URLs become paths. @internal */
export async function classifySource(source: unknown, fn: string): Promise<Classified> {
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
  if (source instanceof PathDirectory) return { kind: 'path', path: source.name };
  if (isBlob(source)) return { kind: 'blob', blob: source };
  if (isModelDirectory(source)) return { kind: 'dir', dir: source };
  const files = filesOf(source, fn);
  if (files) return { kind: 'files', files };
  const got = source === null ? 'null' : typeof source === 'object' ? Object.prototype.toString.call(source) : typeof source;
  throw new Error(`${fn}: expected a path, a URL, a Blob/File, Files or a ModelDirectory, got ${got}`);
}

// ---------------------------------------------------------------------------------------
// Local files (Node)

/** A local file, read with positioned reads. */
class PathSource implements ByteSource {
  private constructor(
    readonly name: string,
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  /** Opens `path`; undefined when it does not exist and `absentOk`. */
  static async open(path: string, absentOk: boolean): Promise<PathSource | undefined> {
    const { fs } = await nodeModules('open', 'pass a URL, a Blob/File or Files');
    let fh: FileHandle;
    try {
      fh = await fs.open(path, 'r');
    } catch (e) {
      if (absentOk && (e as { code?: unknown }).code === 'ENOENT') return undefined;
      throw new SourceError(`cannot open ${path}: ${message(e)}`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new SourceError(`${path}: not a regular file`);
      return new PathSource(path, fh, st.size);
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e instanceof SourceError ? e : new SourceError(`${path}: ${message(e)}`);
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    try {
      return await readExactly(this.fh, length, offset, this.name);
    } catch (e) {
      throw new SourceError(message(e));
    }
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}

/** A local checkpoint folder (Node). */
class PathDirectory implements ModelDirectory {
  constructor(
    readonly name: string,
    private readonly nodePath: typeof import('node:path'),
    private readonly fs: typeof import('node:fs/promises'),
  ) {}

  pathOf(file: string): string {
    return this.nodePath.join(this.name, file);
  }

  open(file: string): Promise<ByteSource | undefined> {
    return PathSource.open(this.pathOf(file), true);
  }

  async readFile(file: string): Promise<Uint8Array | undefined> {
    const p = this.pathOf(file);
    try {
      return await this.fs.readFile(p);
    } catch (e) {
      if ((e as { code?: unknown }).code === 'ENOENT') return undefined;
      throw new SourceError(`cannot read ${p}: ${message(e)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Blobs and Files

function fileLabel(f: Blob): string {
  const rel = (f as { webkitRelativePath?: unknown }).webkitRelativePath;
  if (typeof rel === 'string' && rel !== '') return rel;
  const name = (f as { name?: unknown }).name;
  return typeof name === 'string' && name !== '' ? name : `Blob (${f.size} bytes)`;
}

/** A `Blob` or `File`, read with `slice().arrayBuffer()`. */
class BlobSource implements ByteSource {
  readonly size: number;
  constructor(
    private readonly blob: Blob,
    readonly name: string = fileLabel(blob),
  ) {
    this.size = blob.size;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length);
    if (length === 0) return new Uint8Array(0);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await this.blob.slice(offset, offset + length).arrayBuffer());
    } catch (e) {
      throw new SourceError(`${this.name}: cannot read bytes [${offset}, ${offset + length}): ${message(e)}`);
    }
    if (bytes.length !== length) throw new SourceError(`${this.name}: read ${bytes.length} of the ${length} bytes at ${offset} (file changed while reading?)`);
    return bytes;
  }
}

/** Splits a relative path into segments, resolving `.` and `..`; null when it leads above the root. */
function normalizeRelative(rel: string): string[] | null {
  const out: string[] = [];
  for (const seg of rel.replace(/\\/g, '/').split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(seg);
  }
  return out;
}

/** The `File`s of a folder. */
class FilesDirectory implements ModelDirectory {
  readonly name: string;
  private readonly byPath = new Map<string, File>();
  private readonly root: string;

  constructor(files: File[], fn: string) {
    if (files.length === 0) throw new Error(`${fn}: the list of files is empty`);
    const paths = files.map((f) => normalizeRelative(fileLabel(f)) ?? []);
    const first = paths[0]![0];
    const common = first !== undefined && paths.every((p) => p.length >= 2 && p[0] === first);
    this.root = common ? first : '';
    files.forEach((f, i) => {
      const key = paths[i]!.slice(common ? 1 : 0).join('/');
      if (key === '') throw new Error(`${fn}: files[${i}] has no name`);
      if (this.byPath.has(key)) throw new Error(`${fn}: two files are named ${JSON.stringify(key)}`);
      this.byPath.set(key, f);
    });
    this.name = `${this.root ? `${this.root}/ ` : ''}(${files.length} files)`;
  }

  private find(file: string): File | undefined {
    const p = normalizeRelative(file);
    return p ? this.byPath.get(p.join('/')) : undefined;
  }

  pathOf(file: string): string {
    const p = normalizeRelative(file);
    const rel = p ? p.join('/') : file;
    return this.root ? `${this.root}/${rel}` : rel;
  }

  async open(file: string): Promise<ByteSource | undefined> {
    const f = this.find(file);
    return f ? new BlobSource(f, this.pathOf(file)) : undefined;
  }

  async readFile(file: string): Promise<Uint8Array | undefined> {
    const f = this.find(file);
    if (!f) return undefined;
    const src = new BlobSource(f, this.pathOf(file));
    return src.read(0, src.size);
  }
}

// ---------------------------------------------------------------------------------------
// URLs

interface ResolvedUrlOptions {
  fetch: (input: string, init: RequestInit) => Promise<Response>;
  headers: Record<string, string>;
  maxRequestBytes: number;
  coalesceGapBytes: number;
  maxWholeFileBytes: number;
}

function resolveUrlOptions(o: UrlSourceOptions = {}, fn: string): ResolvedUrlOptions {
  const int = (k: keyof UrlSourceOptions, v: unknown, fallback: number, min: number): number => {
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new Error(`${fn}: ${k} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  };
  if (o.fetch !== undefined && typeof o.fetch !== 'function') throw new Error(`${fn}: fetch must be a function`);
  if (!o.fetch && typeof (globalThis as { fetch?: unknown }).fetch !== 'function') throw new Error(`${fn}: this environment has no fetch; pass options.fetch`);
  return {
    fetch: o.fetch ?? ((input, init) => globalThis.fetch(input, init)),
    headers: { ...(o.headers ?? {}) },
    maxRequestBytes: int('maxRequestBytes', o.maxRequestBytes, DEFAULT_MAX_REQUEST_BYTES, 1),
    coalesceGapBytes: int('coalesceGapBytes', o.coalesceGapBytes, 0, 0),
    maxWholeFileBytes: int('maxWholeFileBytes', o.maxWholeFileBytes, DEFAULT_MAX_WHOLE_FILE_BYTES, 0),
  };
}

/** The URL of `rel` (`/`-separated, `..` allowed) under `base`, each name percent-encoded. */
function urlUnder(base: URL, rel: string): URL {
  const path = rel
    .replace(/\\/g, '/')
    .split('/')
    .map((s) => (s === '.' || s === '..' ? s : encodeURIComponent(s)))
    .join('/');
  return new URL(path, base);
}

async function request(href: string, o: ResolvedUrlOptions, init: { method?: string; range?: string }): Promise<Response> {
  const headers: Record<string, string> = { ...o.headers };
  if (init.range) headers.Range = init.range;
  try {
    // A ranged read must not be answered from the HTTP cache: after a compressed whole-file
    // response, Chromium served later Range requests from cache with an empty body.
    return await o.fetch(href, { method: init.method ?? 'GET', headers, ...(init.range ? { cache: 'no-store' as RequestCache } : {}) });
  } catch (e) {
    throw new SourceError(`${href}: request failed: ${message(e)}`);
  }
}

function httpError(href: string, res: Response, what: string): SourceError {
  void res.body?.cancel().catch(() => undefined);
  return new SourceError(`${href}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''} (${what})`);
}

function notFound(res: Response): boolean {
  return res.status === 404 || res.status === 410;
}

/**
 * An HTML page served for a file that is not HTML: single-page-app servers answer every
 * missing path with index.html and status 200. Read as "not found", so optional files
 * (model.safetensors.index.json, chat_template.jinja) are skipped and a missing required one is
 * named as missing rather than failing as "not valid JSON".
 */
function htmlFallback(href: string, res: Response): boolean {
  return res.ok && /^text\/html\b/i.test(res.headers.get('content-type') ?? '') && !/\.html?$/i.test(new URL(href).pathname);
}

/** Content-Length of an unencoded body, else undefined. */
function declaredLength(res: Response): number | undefined {
  const enc = res.headers.get('content-encoding');
  if (enc && enc.toLowerCase() !== 'identity') return undefined;
  const v = res.headers.get('content-length');
  return v !== null && /^\d+$/.test(v.trim()) ? Number(v) : undefined;
}

async function bodyBytes(href: string, res: Response, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    const cause = (e as { cause?: unknown }).cause;
    throw new SourceError(`${href}: the response to ${what} ended early (truncated body?): ${message(e)}${cause ? ` (${message(cause)})` : ''}`);
  }
}

/** A whole body of at most `cap` bytes (an error naming the URL beyond it), its length checked against Content-Length. */
async function cappedBody(href: string, res: Response, cap: number, what: string): Promise<Uint8Array> {
  const declared = declaredLength(res);
  const tooBig = (n: string) =>
    new SourceError(
      `${href}: the server ignored the HTTP Range request (it answered ${res.status} with the whole file instead of 206) and the file is ${n} bytes, ` +
        `over maxWholeFileBytes (${cap}); serve the checkpoint from a server that supports Range requests, or raise maxWholeFileBytes (openModelDirectory(url, { maxWholeFileBytes }))`,
    );
  if (declared !== undefined && declared > cap) {
    void res.body?.cancel().catch(() => undefined);
    throw tooBig(String(declared));
  }
  let bytes: Uint8Array;
  if (!res.body) {
    bytes = await bodyBytes(href, res, what);
  } else {
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let total = 0;
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.length;
        if (total > cap) {
          await reader.cancel().catch(() => undefined);
          throw tooBig(`more than ${cap}`);
        }
        chunks.push(value);
      }
    } catch (e) {
      if (e instanceof SourceError) throw e;
      const cause = (e as { cause?: unknown }).cause;
      throw new SourceError(`${href}: the response to ${what} ended early (truncated body?): ${message(e)}${cause ? ` (${message(cause)})` : ''}`);
    }
    bytes = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
  }
  if (bytes.length > cap) throw tooBig(String(bytes.length));
  if (declared !== undefined && bytes.length !== declared) {
    throw new SourceError(`${href}: truncated response to ${what}: ${bytes.length} of the ${declared} bytes its Content-Length announced`);
  }
  return bytes;
}

/** `bytes a-b/total` (total undefined for `*`), or `bytes *​/total` (start undefined). */
function parseContentRange(v: string | null): { start?: number; end?: number; total?: number } | undefined {
  if (v === null) return undefined;
  const m = /^\s*bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)\s*$/i.exec(v);
  if (!m) return undefined;
  const num = (s: string | undefined) => (s === undefined || s === '*' ? undefined : Number(s));
  return { start: num(m[1]), end: num(m[2]), total: num(m[3]) };
}

const warnedWhole = new Set<string>();

function warnWholeFile(href: string, size: number): void {
  if (warnedWhole.has(href)) return;
  warnedWhole.add(href);
  console.warn(
    `inf-llava: ${href}: the server ignores HTTP Range requests (it answered 200, not 206), so the whole file (${size} bytes) was fetched ` +
      'instead of only the byte ranges needed; serve checkpoints from a server with Range support',
  );
}

function checkRange(src: ByteSource, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > src.size) {
    throw new SourceError(`${src.name}: cannot read bytes [${offset}, ${offset + length}) of a ${src.size}-byte file`);
  }
}

/** How many bytes the first request of an opened URL asks for (a safetensors file's header length). */
const HEAD_BYTES = 8;

/**
 * A file over HTTP(S): the first request (`Range: bytes=0-7`) gives the size (`Content-Range`)
 * and the first bytes; every later read is one or more Range requests of at most
 * `maxRequestBytes`, each checked (status 206, `Content-Range` start, end and total, body length).
 */
class HttpSource implements ByteSource {
  readonly coalesce: { gapBytes: number; maxBytes: number };
  private whole: Uint8Array | undefined;

  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly head: Uint8Array,
    whole: Uint8Array | undefined,
    private readonly o: ResolvedUrlOptions,
  ) {
    this.whole = whole;
    this.coalesce = { gapBytes: o.coalesceGapBytes, maxBytes: o.maxRequestBytes };
  }

  /** Opens `url`; undefined on 404/410 when `absentOk`. */
  static async open(url: URL, o: ResolvedUrlOptions, absentOk: boolean): Promise<HttpSource | undefined> {
    const href = url.href;
    const range = `bytes=0-${HEAD_BYTES - 1}`;
    const res = await request(href, o, { range });
    if (notFound(res)) {
      void res.body?.cancel().catch(() => undefined);
      if (absentOk) return undefined;
      throw new SourceError(`${href}: not found (HTTP ${res.status})`);
    }
    if (res.status === 200) {
      const whole = await cappedBody(href, res, o.maxWholeFileBytes, 'a GET');
      warnWholeFile(href, whole.length);
      return new HttpSource(href, whole.length, whole.subarray(0, 0), whole, o);
    }
    if (res.status === 416) {
      const cr = parseContentRange(res.headers.get('content-range'));
      void res.body?.cancel().catch(() => undefined);
      if (cr?.total === 0) return new HttpSource(href, 0, new Uint8Array(0), undefined, o);
      throw httpError(href, res, `Range ${range}`);
    }
    if (res.status !== 206) throw httpError(href, res, `Range ${range}`);
    const raw = res.headers.get('content-range');
    const cr = parseContentRange(raw);
    if (raw !== null && (cr?.start === undefined || cr.start !== 0 || cr.end! < cr.start || cr.end! >= HEAD_BYTES)) {
      void res.body?.cancel().catch(() => undefined);
      throw new SourceError(`${href}: asked for ${range}, the server answered Content-Range ${JSON.stringify(raw)}`);
    }
    const body = await bodyBytes(href, res, `Range ${range}`);
    let size = cr?.total;
    if (size === undefined) size = await HttpSource.sizeByHead(href, o);
    const expected = cr ? cr.end! + 1 : Math.min(HEAD_BYTES, size);
    if (body.length !== expected) throw new SourceError(`${href}: truncated response to Range ${range}: ${body.length} of ${expected} bytes`);
    if (cr && cr.end! >= size) throw new SourceError(`${href}: Content-Range ${JSON.stringify(raw)} lies past the file's end`);
    return new HttpSource(href, size, body, undefined, o);
  }

  /** The size from a HEAD request (when Content-Range is absent or hidden by CORS). */
  private static async sizeByHead(href: string, o: ResolvedUrlOptions): Promise<number> {
    const res = await request(href, o, { method: 'HEAD' });
    if (!res.ok) throw httpError(href, res, 'HEAD');
    const n = declaredLength(res);
    if (n === undefined) {
      throw new SourceError(`${href}: the server reports no file size (no readable Content-Range on the 206 response, no Content-Length on HEAD; cross-origin servers must expose Content-Range)`);
    }
    return n;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length);
    if (length === 0) return new Uint8Array(0);
    const end = offset + length;
    if (this.whole) return this.whole.subarray(offset, end);
    if (end <= this.head.length) return this.head.subarray(offset, end);
    const out = new Uint8Array(length);
    let pos = offset;
    while (pos < end) {
      const last = Math.min(end, pos + this.o.maxRequestBytes) - 1;
      const range = `bytes=${pos}-${last}`;
      const res = await request(this.name, this.o, { range });
      if (res.status === 200) {
        const whole = await cappedBody(this.name, res, this.o.maxWholeFileBytes, `Range ${range}`);
        warnWholeFile(this.name, whole.length);
        if (whole.length !== this.size) throw new SourceError(`${this.name}: the file changed on the server (${whole.length} bytes, was ${this.size})`);
        this.whole = whole;
        return whole.subarray(offset, end);
      }
      if (notFound(res)) {
        void res.body?.cancel().catch(() => undefined);
        throw new SourceError(`${this.name}: not found (HTTP ${res.status}) for Range ${range} (the file was there when opened)`);
      }
      if (res.status !== 206) throw httpError(this.name, res, `Range ${range}`);
      const raw = res.headers.get('content-range');
      const cr = parseContentRange(raw);
      if (raw !== null) {
        if (cr?.start === undefined || cr.start !== pos || cr.end! < pos || cr.end! > last) {
          void res.body?.cancel().catch(() => undefined);
          throw new SourceError(`${this.name}: asked for ${range}, the server answered Content-Range ${JSON.stringify(raw)}`);
        }
        if (cr.total !== undefined && cr.total !== this.size) {
          void res.body?.cancel().catch(() => undefined);
          throw new SourceError(`${this.name}: the file changed on the server (${cr.total} bytes, was ${this.size})`);
        }
      }
      const n = cr ? cr.end! - pos + 1 : last - pos + 1;
      const body = await bodyBytes(this.name, res, `Range ${range}`);
      if (body.length !== n) throw new SourceError(`${this.name}: truncated response to Range ${range}: ${body.length} of ${n} bytes`);
      out.set(body, pos - offset);
      pos += n;
    }
    return out;
  }
}

/** A checkpoint folder over HTTP(S): files resolve relative to the base URL; opened files are kept (their first bytes, or a whole-file fallback, are fetched once). */
class UrlDirectory implements ModelDirectory {
  readonly name: string;
  private readonly opened = new Map<string, Promise<HttpSource | undefined>>();

  constructor(
    private readonly base: URL,
    private readonly o: ResolvedUrlOptions,
  ) {
    this.name = base.href;
  }

  pathOf(file: string): string {
    return urlUnder(this.base, file).href;
  }

  open(file: string): Promise<ByteSource | undefined> {
    const url = urlUnder(this.base, file);
    let p = this.opened.get(url.href);
    if (!p) {
      p = HttpSource.open(url, this.o, true);
      this.opened.set(url.href, p);
      p.catch(() => this.opened.delete(url.href));
    }
    return p;
  }

  /** Whole small files (configs, the shard index) are fetched once per folder. */
  private readonly files = new Map<string, Promise<Uint8Array | undefined>>();

  readFile(file: string): Promise<Uint8Array | undefined> {
    const href = this.pathOf(file);
    let p = this.files.get(href);
    if (!p) {
      p = this.fetchFile(href);
      this.files.set(href, p);
      p.catch(() => this.files.delete(href));
    }
    return p;
  }

  private async fetchFile(href: string): Promise<Uint8Array | undefined> {
    const res = await request(href, this.o, {});
    if (notFound(res) || htmlFallback(href, res)) {
      void res.body?.cancel().catch(() => undefined);
      return undefined;
    }
    if (!res.ok) throw httpError(href, res, 'GET');
    const bytes = await bodyBytes(href, res, 'a GET');
    const declared = declaredLength(res);
    if (declared !== undefined && bytes.length !== declared) {
      throw new SourceError(`${href}: truncated response to a GET: ${bytes.length} of the ${declared} bytes its Content-Length announced`);
    }
    return bytes;
  }
}

/** `url` with a trailing `/` (a folder). */
function asFolder(url: URL): URL {
  const u = new URL(url.href);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

// ---------------------------------------------------------------------------------------
// Public openers

/**
 * Opens one file for ranged reads: a local path (Node), an `http(s)` URL (string or `URL`; the
 * first request, `Range: bytes=0-7`, gives the size), or a `Blob`/`File`. Close it when done
 * (`await source.close?.()`).
 */
export async function openByteSource(source: string | URL | Blob, opts: UrlSourceOptions = {}): Promise<ByteSource> {
  const fn = 'openByteSource';
  const c = await classifySource(source, fn);
  try {
    switch (c.kind) {
      case 'path':
        await nodeModules(fn, 'pass a URL or a Blob/File');
        return (await PathSource.open(c.path, false))!;
      case 'url':
        return (await HttpSource.open(c.url, resolveUrlOptions(opts, fn), false))!;
      case 'blob':
        return new BlobSource(c.blob);
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

/** A folder source as a {@link ModelDirectory}; `fn` and `hint` go into errors. @internal */
export async function toDirectory(source: unknown, fn: string, hint = 'pass a URL or Files', opts?: UrlSourceOptions): Promise<ModelDirectory> {
  if (source instanceof PathDirectory || (isModelDirectory(source) && !isBlob(source))) return source as ModelDirectory;
  const c = await classifySource(source, fn);
  switch (c.kind) {
    case 'path': {
      const { fs, path } = await nodeModules(fn, hint);
      return new PathDirectory(c.path, path, fs);
    }
    case 'url':
      return new UrlDirectory(asFolder(c.url), resolveUrlOptions(opts, fn));
    case 'files':
      return new FilesDirectory(c.files, fn);
    case 'dir':
      return c.dir;
    case 'blob':
      throw new Error(`${fn}: a Blob/File is one file; pass a folder: a path, a base URL, or the Files of a picked folder`);
  }
}

/** Opens a URL file (for `loadSafetensors` on a file URL). @internal */
export async function openUrlFile(url: URL, opts: UrlSourceOptions | undefined, fn: string): Promise<ByteSource> {
  return (await HttpSource.open(url, resolveUrlOptions(opts, fn), false))!;
}

/** Opens a local file. @internal */
export async function openPathFile(path: string): Promise<ByteSource> {
  return (await PathSource.open(path, false))!;
}

/** A `Blob`/`File` as a source. @internal */
export function blobSource(blob: Blob, name?: string): ByteSource {
  return new BlobSource(blob, name);
}

/** The folder URL of a URL (`https://h/a/b.json` → `https://h/a/`). @internal */
export function urlFolderOf(url: URL): URL {
  return new URL('./', url);
}

/** A URL folder as a directory. @internal */
export function urlDirectory(base: URL, opts: UrlSourceOptions | undefined, fn: string): ModelDirectory {
  return new UrlDirectory(asFolder(base), resolveUrlOptions(opts, fn));
}

/** Whether `dir` is a local folder, and its path. @internal */
export function localPathOf(dir: ModelDirectory): string | undefined {
  return dir instanceof PathDirectory ? dir.name : undefined;
}

/** Why `file` is missing from `dir`, in words. @internal */
export function missingWhy(dir: ModelDirectory): string {
  return dir instanceof UrlDirectory ? 'not found (HTTP 404)' : dir instanceof FilesDirectory ? 'not among the given files' : 'no such file';
}

// ---------------------------------------------------------------------------------------
// Reading many ranges

/** A byte range of a source. @internal */
export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * Reads `ranges` from `source` in offset order, yielding each with its bytes. With
 * `source.coalesce`, ranges at most `gapBytes` apart are read together (at most `maxBytes` per
 * read; one longer range is read alone and split by the source); otherwise one read per range.
 * @internal
 */
export async function* readRanges<T extends ByteRange>(source: ByteSource, ranges: readonly T[]): AsyncGenerator<[T, Uint8Array]> {
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset);
  const co = source.coalesce;
  let i = 0;
  while (i < sorted.length) {
    const first = sorted[i]!;
    let end = first.offset + first.length;
    let j = i + 1;
    if (co) {
      while (j < sorted.length) {
        const r = sorted[j]!;
        const rEnd = Math.max(end, r.offset + r.length);
        if (r.offset - end > co.gapBytes || rEnd - first.offset > co.maxBytes) break;
        end = rEnd;
        j++;
      }
    }
    if (j === i + 1) {
      yield [first, await source.read(first.offset, first.length)];
    } else {
      const span = await source.read(first.offset, end - first.offset);
      for (let k = i; k < j; k++) {
        const r = sorted[k]!;
        yield [r, span.subarray(r.offset - first.offset, r.offset - first.offset + r.length)];
      }
    }
    i = j;
  }
}

/** Whole-file bytes as UTF-8 text. @internal */
export function utf8Text(bytes: Uint8Array): string {
  return new TextDecoder('utf-8').decode(bytes);
}
