/**
 * A small static file server with HTTP Range support, for the demo and the browser tests.
 * It binds to 127.0.0.1 (pages get `navigator.gpu` only in a secure context: localhost counts),
 * answers `Range: bytes=a-b` with 206 (one range per request; a server may answer a multi-range
 * request with the whole file, and this one does), and counts what it sends, per request, so
 * tests can check that a loader read only the byte ranges it needed. `range: false` makes it a
 * server that ignores Range headers (as `python3 -m http.server` does).
 *
 *   npx tsx examples/web/server.ts [dir] [--port 8080]     (default dir: examples/web/dist)
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
};

/** One answered request. */
export interface ServedRequest {
  method: string;
  /** URL path, decoded, without the query. */
  path: string;
  status: number;
  /** The request's Range header, if any. */
  range?: string;
  /** Body bytes sent. */
  bytes: number;
}

export interface StaticOptions {
  /** Directory served at `/` (`/` itself → `index.html`). */
  root?: string;
  /** Extra files: URL path without the leading slash → file on disk (checked before `root`). */
  files?: Record<string, string>;
  /** Answer Range requests with 206 (default true); false: always the whole file, no `Accept-Ranges`. */
  range?: boolean;
  /** Called after each response. */
  onResponse?: (r: ServedRequest) => void;
}

/** Parses a single `bytes=` range against `size`; null when unsatisfiable, undefined when not a single range. */
function parseRange(header: string, size: number): [number, number] | null | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]); // the last n bytes
    if (n === 0) return null;
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) return null;
  return [start, end];
}

/** A request handler (Node http, or connect-style middleware with `next`). */
export function staticHandler(opts: StaticOptions): (req: IncomingMessage, res: ServerResponse, next?: () => void) => void {
  const root = opts.root ? resolve(opts.root) : undefined;
  const useRange = opts.range ?? true;
  return (req, res, next) => {
    const method = req.method ?? 'GET';
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      path = '';
    }
    const done = (status: number, bytes: number) => opts.onResponse?.({ method, path, status, range: req.headers.range, bytes });
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range, Accept-Ranges');
    res.setHeader('Cache-Control', 'no-store');
    if (method === 'OPTIONS') {
      res.writeHead(204, { 'Access-Control-Allow-Headers': 'Range', 'Access-Control-Allow-Methods': 'GET, HEAD' }).end();
      return done(204, 0);
    }
    let file = opts.files?.[path.replace(/^\//, '')];
    if (!file && root) {
      const p = resolve(join(root, path.endsWith('/') ? `${path}index.html` : path));
      if (p === root || p.startsWith(root + sep)) file = p;
    }
    let size = -1;
    try {
      const st = file ? statSync(file) : undefined;
      if (st?.isFile()) size = st.size;
    } catch {
      size = -1;
    }
    if (size < 0 || !file || (method !== 'GET' && method !== 'HEAD')) {
      if (next && size < 0) return next();
      res.writeHead(size < 0 ? 404 : 405, { 'Content-Type': 'text/plain; charset=utf-8' }).end(size < 0 ? `not found: ${path}\n` : 'method not allowed\n');
      return done(size < 0 ? 404 : 405, 0);
    }
    const headers: Record<string, string | number> = { 'Content-Type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream' };
    let start = 0;
    let end = size - 1;
    let status = 200;
    if (useRange) {
      headers['Accept-Ranges'] = 'bytes';
      const r = req.headers.range ? parseRange(req.headers.range, size) : undefined;
      if (r === null) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return done(416, 0);
      }
      if (r) {
        [start, end] = r;
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
      }
    }
    const length = end - start + 1;
    headers['Content-Length'] = length;
    res.writeHead(status, headers);
    if (method === 'HEAD' || length === 0) {
      res.end();
      return done(status, 0);
    }
    let sent = 0;
    const stream = createReadStream(file, { start, end });
    stream.on('data', (chunk) => (sent += chunk.length));
    stream.on('error', () => res.destroy());
    res.on('close', () => done(status, sent));
    stream.pipe(res);
  };
}

export interface StaticServer {
  /** `http://127.0.0.1:PORT/` */
  url: string;
  port: number;
  /** Every response so far (cleared by `reset`). */
  requests: ServedRequest[];
  /** Body bytes sent for paths starting with `prefix` (all paths without one). */
  bytesSent(prefix?: string): number;
  reset(): void;
  close(): Promise<void>;
}

/** Starts a server on 127.0.0.1 (port 0: any free port). */
export async function startStaticServer(opts: StaticOptions & { port?: number } = {}): Promise<StaticServer> {
  const requests: ServedRequest[] = [];
  const handler = staticHandler({
    ...opts,
    onResponse: (r) => {
      requests.push(r);
      opts.onResponse?.(r);
    },
  });
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, '127.0.0.1', () => ok());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    requests,
    bytesSent: (prefix = '') => requests.filter((r) => r.path.startsWith(prefix)).reduce((a, r) => a + r.bytes, 0),
    reset: () => void requests.splice(0),
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

// As a command: serve a directory (default: the built demo).
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--port');
  const port = at >= 0 ? Number(args[at + 1]) : 8080;
  const dir = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--port') ?? join(fileURLToPath(new URL('.', import.meta.url)), 'dist');
  const s = await startStaticServer({ root: dir, port, onResponse: (r) => console.log(`${r.status} ${r.method} ${r.path}${r.range ? ` (${r.range})` : ''} ${r.bytes} B`) });
  console.log(`serving ${dir} at ${s.url} (Range requests supported)`);
}
