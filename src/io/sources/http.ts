/**
 * Files and folders over HTTP(S), read with Range requests: every response is checked (status,
 * `Content-Range`, body length) and a failure names the URL.
 */
import { errorMessage as message } from '../../util/format.js';
import { shardedIn, inFolder, type ResolvedCheckpoint } from './checkpoint.js';
import { checkRange } from './ranges.js';
import {
  DEFAULT_MAX_REQUEST_BYTES,
  DEFAULT_MAX_WHOLE_FILE_BYTES,
  SourceError,
  type ByteSource,
  type ModelDirectory,
  type UrlSourceOptions,
} from './types.js';

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

  whyMissing(): string {
    return 'not found (HTTP 404)';
  }
}

/** `url` with a trailing `/` (a folder). */
function asFolder(url: URL): URL {
  const u = new URL(url.href);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

/** Opens a URL file (it must exist); `fn` names option errors. @internal */
export async function openUrlFile(url: URL, opts: UrlSourceOptions | undefined, fn: string): Promise<ByteSource> {
  return (await HttpSource.open(url, resolveUrlOptions(opts, fn), false))!;
}

/** A URL folder as a directory (a trailing `/` added when missing). @internal */
export function urlDirectory(base: URL, opts: UrlSourceOptions | undefined, fn: string): ModelDirectory {
  return new UrlDirectory(asFolder(base), resolveUrlOptions(opts, fn));
}

/**
 * The checkpoint at a URL: a folder when it ends in `/`, an index when it ends in `.json`
 * (shards relative to it), else one file (opened, and its options checked, when read). @internal
 */
export async function resolveUrl(url: URL, opts: UrlSourceOptions | undefined, fn: string): Promise<ResolvedCheckpoint> {
  if (url.pathname.endsWith('/')) return inFolder(urlDirectory(url, opts, fn), fn);
  if (url.pathname.toLowerCase().endsWith('.json')) {
    const dir = urlDirectory(new URL('./', url), opts, fn);
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
