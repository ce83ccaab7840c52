// Loading without a file system: the loaders read an http(s) URL with Range requests (against a
// Range-capable static server on 127.0.0.1, written here with node:http, that counts the bytes
// it sends), a Blob/File, and the Files of a picked folder — with the same tensors, logits and
// errors as from a local path. Also the failure modes of a remote source: 404, a server that
// ignores Range, a truncated body, a lying Content-Length, HTTP 500, hostile headers.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  loadClipVision,
  loadInfLlava,
  loadLlama,
  loadSafetensors,
  loadSafetensorsRaw,
  loadTokenizer,
  openByteSource,
  openModelDirectory,
  parseSafetensorsHeader,
  readSafetensors,
  saveSafetensors,
  SAFETENSORS_MAX_HEADER_BYTES,
  type InfLlava,
  type Llama,
} from '../src/index.js';
import { describeEachBackend } from './backends.js';

// ---------------------------------------------------------------------------------------
// The static server

interface Served {
  method: string;
  path: string;
  range: string | null;
  status: number;
  /** Body bytes written. */
  bytes: number;
}

/**
 * Serves `/<mode>/<root>/<file>`: roots `fixtures` (test/fixtures), `assets` and `tmp` (a temp
 * directory). Modes: `range` (single-range Range requests: 206 + Content-Range, 416 past the end,
 * HEAD), `norange` (ignores Range: always 200 with the whole file), `truncated` (206 responses
 * carry half their bytes, Content-Length saying so), `lying` (206 responses announce every byte
 * in Content-Length, send half and close), `error500`.
 */
class StaticServer {
  readonly requests: Served[] = [];
  private server!: Server;
  url = '';

  constructor(private readonly roots: Record<string, string>) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }

  reset(): void {
    this.requests.length = 0;
  }

  /** Body bytes sent for paths starting with `prefix`. */
  bytesSent(prefix = '/'): number {
    return this.requests.filter((r) => r.path.startsWith(prefix)).reduce((a, r) => a + r.bytes, 0);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    const range = req.headers.range ?? null;
    const log: Served = { method: req.method!, path, range, status: 0, bytes: 0 };
    this.requests.push(log);
    const send = (status: number, headers: Record<string, string | number>, body?: Uint8Array, destroyAfter = false) => {
      log.status = status;
      res.writeHead(status, headers);
      if (body && req.method !== 'HEAD') {
        log.bytes += body.length;
        if (destroyAfter) {
          res.write(body, () => res.destroy());
          return;
        }
        res.end(body);
      } else res.end();
    };
    const [, mode, root, ...rest] = path.split('/');
    const dir = this.roots[root ?? ''];
    let data: Uint8Array;
    try {
      if (!dir || rest.some((s) => s === '..')) throw new Error('no root');
      data = new Uint8Array(readFileSync(join(dir, ...rest)));
    } catch {
      send(404, { 'Content-Type': 'text/plain' }, new TextEncoder().encode('not found'));
      return;
    }
    if (mode === 'error500') return send(500, {}, new TextEncoder().encode('boom'));
    const m = /^bytes=(\d*)-(\d*)$/.exec(range ?? '');
    if (mode === 'norange' || !m || req.method === 'HEAD') {
      return send(200, { 'Content-Length': data.length, 'Accept-Ranges': mode === 'norange' ? 'none' : 'bytes' }, data);
    }
    const size = data.length;
    let start = m[1] === '' ? size - Number(m[2]) : Number(m[1]);
    let end = m[1] === '' || m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    start = Math.max(0, start);
    if (start >= size || end < start) return send(416, { 'Content-Range': `bytes */${size}` });
    const body = data.subarray(start, end + 1);
    const headers = { 'Content-Range': `bytes ${start}-${end}/${size}`, 'Accept-Ranges': 'bytes' };
    if (mode === 'truncated') {
      const half = body.subarray(0, Math.floor(body.length / 2));
      return send(206, { ...headers, 'Content-Length': half.length }, half);
    }
    if (mode === 'lying') return send(206, { ...headers, 'Content-Length': body.length }, body.subarray(0, Math.floor(body.length / 2)), true);
    end = start + body.length - 1;
    send(206, { ...headers, 'Content-Length': body.length }, body);
  }
}

// ---------------------------------------------------------------------------------------
// Helpers

const TINY_INF_LLAVA = 'assets/tiny-inf-llava';
const TINY_LLAMA = 'test/fixtures/llama/tiny-llama';
const TINY_LLAMA_BF16 = 'test/fixtures/llama/tiny-llama-bf16';
const TOKENIZER = 'test/fixtures/tokenizer/tiny-llama3-tokenizer';
const CLIP_VISION = 'test/fixtures/clip/tiny-clip-vision';

let tmp = '';
const server = new StaticServer({ fixtures: resolve('test/fixtures'), assets: resolve('assets'), tmp: '' });

/** `http://127.0.0.1:port/<mode>/<root>/<rest>` for a repository path (test/fixtures/…, assets/…) or a temp file. */
function urlOf(path: string, mode = 'range'): string {
  if (path.startsWith('test/fixtures/')) return `${server.url}${mode}/fixtures/${path.slice('test/fixtures/'.length)}`;
  if (path.startsWith('assets/')) return `${server.url}${mode}/assets/${path.slice('assets/'.length)}`;
  if (path.startsWith(tmp)) return `${server.url}${mode}/tmp/${path.slice(tmp.length + 1)}`;
  throw new Error(`not served: ${path}`);
}

// Asynchronous reads: webgpu in Node cannot read back synchronously.
const bits = async (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from((await t.data()) as Float32Array).buffer));

async function expectSameTensors(a: Record<string, tf.Tensor>, b: Record<string, tf.Tensor>): Promise<void> {
  expect(Object.keys(a)).toEqual(Object.keys(b));
  for (const k of Object.keys(a)) {
    expect(a[k]!.shape, k).toEqual(b[k]!.shape);
    expect(a[k]!.dtype, k).toBe(b[k]!.dtype);
    expect(await bits(a[k]!), k).toEqual(await bits(b[k]!));
  }
}

const disposeAll = (...rs: { tensors: Record<string, tf.Tensor> }[]) => rs.forEach((r) => tf.dispose(Object.values(r.tensors)));

function headerOf(bytes: Uint8Array) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length, 'test');
}

/** Byte ranges `[begin, end)` (absolute) of the entries, adjacent ones merged (what a reader coalesces). */
function runs(entries: { begin: number; end: number }[], dataOffset: number): [number, number][] {
  const out: [number, number][] = [];
  for (const e of [...entries].sort((a, b) => a.begin - b.begin)) {
    const last = out[out.length - 1];
    if (last && last[1] === dataOffset + e.begin) last[1] = dataOffset + e.end;
    else out.push([dataOffset + e.begin, dataOffset + e.end]);
  }
  return out;
}

async function errorOf(op: () => Promise<unknown>): Promise<string> {
  const n = tf.memory().numTensors;
  try {
    const r = await op();
    if (r && typeof r === 'object' && 'tensors' in r) disposeAll(r as { tensors: Record<string, tf.Tensor> });
  } catch (e) {
    expect(tf.memory().numTensors, 'tensors left behind by a failed call').toBe(n);
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

/** The files of a folder as `File`s named like a picked folder's (`<folder>/<file>` in webkitRelativePath). */
function pickedFolder(dir: string): File[] {
  const folder = dir.split('/').pop()!;
  return readdirSync(dir).map((f) => {
    const file = new File([readFileSync(join(dir, f))], f);
    Object.defineProperty(file, 'webkitRelativePath', { value: `${folder}/${f}` });
    return file;
  });
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'inf-llava-url-'));
  (server as unknown as { roots: Record<string, string> }).roots.tmp = tmp;
  await server.start();
});
afterAll(async () => {
  await server.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// Reading (backend-independent: cpu)

describe('loadSafetensors over HTTP, from Blobs and Files', () => {
  let before = 0;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    await tf.ready();
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
    server.reset();
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors leaked by this test').toBe(before);
  });

  const CKPT = `${TINY_INF_LLAVA}/model.safetensors`;

  it('with a prefix: bytes=0-7, the header, then only the wanted byte ranges (adjacent tensors in one request)', async () => {
    const bytes = new Uint8Array(readFileSync(CKPT));
    const header = headerOf(bytes);
    for (const prefix of ['model.spatial_embed.', ['model.mm_projector.', 'model.norm.'], 'model.layers.1.']) {
      const prefixes = typeof prefix === 'string' ? [prefix] : prefix;
      const wanted = header.entries.filter((e) => prefixes.some((p) => e.name.startsWith(p)));
      const wantedBytes = wanted.reduce((a, e) => a + e.end - e.begin, 0);
      const spans = runs(wanted, header.dataOffset);
      server.reset();
      const url = urlOf(CKPT);
      const [a, b] = [await loadSafetensors(url, { prefix }), await loadSafetensors(CKPT, { prefix })];
      await expectSameTensors(a.tensors, b.tensors);
      expect(Object.keys(a.tensors).length).toBe(wanted.length);
      disposeAll(a, b);
      const sent = server.bytesSent();
      console.log(
        `loadSafetensors(url, { prefix: ${JSON.stringify(prefix)} }): ${server.requests.length} requests, ${sent} bytes sent of a ${bytes.length}-byte file ` +
          `(8 + header ${header.headerLength} + ${wanted.length} tensors of ${wantedBytes} bytes in ${spans.length} runs)`,
      );
      expect(sent).toBe(8 + header.headerLength + wantedBytes);
      expect(sent).toBeLessThan(bytes.length / 4);
      expect(server.requests.map((r) => r.range)).toEqual([
        'bytes=0-7',
        `bytes=8-${header.dataOffset - 1}`,
        ...spans.map(([s, e]) => `bytes=${s}-${e - 1}`),
      ]);
      expect(server.requests.every((r) => r.method === 'GET' && r.status === 206)).toBe(true);
    }
  });

  it('requests are capped at maxRequestBytes (a longer tensor is split), and coalesceGapBytes reads across gaps', async () => {
    const bytes = new Uint8Array(readFileSync(CKPT));
    const header = headerOf(bytes);
    const prefix = 'model.layers.0.';
    const wanted = header.entries.filter((e) => e.name.startsWith(prefix));
    const wantedBytes = wanted.reduce((a, e) => a + e.end - e.begin, 0);
    const ref = await loadSafetensors(CKPT, { prefix });
    const small = await loadSafetensors(urlOf(CKPT), { prefix, maxRequestBytes: 1000 });
    await expectSameTensors(small.tensors, ref.tensors);
    const data = server.requests.slice(2);
    expect(data.every((r) => { const [s, e] = r.range!.slice(6).split('-').map(Number); return e! - s! + 1 <= 1000; })).toBe(true);
    expect(server.bytesSent()).toBe(8 + header.headerLength + wantedBytes);
    // Two groups far apart: with a large enough gap they come in one request, the gap included.
    server.reset();
    const two = ['model.layers.0.input_layernorm.', 'model.layers.0.post_attention_layernorm.'];
    const picked = header.entries.filter((e) => two.some((p) => e.name.startsWith(p))).sort((a, b) => a.begin - b.begin);
    const gap = picked[1]!.begin - picked[0]!.end;
    expect(gap).toBeGreaterThan(0);
    const joined = await loadSafetensors(urlOf(CKPT), { prefix: two, coalesceGapBytes: gap });
    expect(server.requests.slice(2).map((r) => r.range)).toEqual([`bytes=${header.dataOffset + picked[0]!.begin}-${header.dataOffset + picked[1]!.end - 1}`]);
    const apart = await loadSafetensors(CKPT, { prefix: two });
    await expectSameTensors(joined.tensors, apart.tensors);
    disposeAll(ref, small, joined, apart);
  });

  it('a sharded checkpoint through model.safetensors.index.json: a base URL, the index URL, Files; shards without wanted tensors are not touched', async () => {
    const { tensors } = readSafetensors(new Uint8Array(readFileSync(`${TINY_LLAMA}/model.safetensors`)));
    const names = Object.keys(tensors).sort();
    const first = names.filter((n) => !n.startsWith('model.layers.1.'));
    const second = names.filter((n) => n.startsWith('model.layers.1.'));
    const dir = join(tmp, 'sharded');
    await mkdir(dir, { recursive: true });
    const pick = (ns: string[]) => Object.fromEntries(ns.map((n) => [n, tensors[n]!]));
    await writeFile(join(dir, 'model-00001-of-00002.safetensors'), saveSafetensors(pick(first)));
    await writeFile(join(dir, 'model-00002-of-00002.safetensors'), saveSafetensors(pick(second)));
    const weightMap = Object.fromEntries([...first.map((n) => [n, 'model-00001-of-00002.safetensors']), ...second.map((n) => [n, 'model-00002-of-00002.safetensors'])]);
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 123 }, weight_map: weightMap }));
    tf.dispose(Object.values(tensors));

    const ref = await loadSafetensors(dir);
    for (const source of [`${urlOf(dir)}/`, new URL(`${urlOf(dir)}/model.safetensors.index.json`), pickedFolder(dir)]) {
      const r = await loadSafetensors(source);
      await expectSameTensors(r.tensors, ref.tensors);
      expect({ ...r.metadata }).toEqual({ total_size: '123' });
      disposeAll(r);
    }
    server.reset();
    const onlyFirst = await loadSafetensors(`${urlOf(dir)}/`, { prefix: 'model.embed_tokens.' });
    expect(Object.keys(onlyFirst.tensors)).toEqual(['model.embed_tokens.weight']);
    expect(server.requests.filter((r) => r.path.endsWith('model-00002-of-00002.safetensors')).map((r) => r.range), 'shard 2 holds no wanted tensor').toEqual([]);
    disposeAll(ref, onlyFirst);
    // A shard leading outside the folder is refused, as for paths.
    server.reset();
    const bad = join(tmp, 'escape');
    await mkdir(bad, { recursive: true });
    await writeFile(join(bad, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '../sharded/model-00001-of-00002.safetensors' } }));
    expect(await errorOf(() => loadSafetensors(`${urlOf(bad)}/`))).toMatch(/^loadSafetensors: http:\/\/127\.0\.0\.1:\d+\/range\/tmp\/escape\/model\.safetensors\.index\.json: shard "\.\.\/sharded\/model-00001-of-00002\.safetensors" leads outside the checkpoint directory$/);
    await writeFile(join(bad, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'https://elsewhere.example/x.safetensors' } }));
    expect(await errorOf(() => loadSafetensors(`${urlOf(bad)}/`))).toMatch(/shard "https:\/\/elsewhere\.example\/x\.safetensors" is an absolute path/);
    expect(server.requests.some((r) => r.path.includes('sharded/model-00001')), 'the escaping shard is never fetched').toBe(false);
  });

  it('a server that ignores Range: one whole-file fetch per source with one console warning per URL; over maxWholeFileBytes, an error naming the URL', async () => {
    const size = readFileSync(CKPT).length;
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      const url = urlOf(CKPT, 'norange');
      const ref = await loadSafetensors(CKPT, { prefix: 'model.spatial_embed.' });
      const a = await loadSafetensors(url, { prefix: 'model.spatial_embed.' });
      await expectSameTensors(a.tensors, ref.tensors);
      expect(server.requests.length).toBe(1);
      expect(server.bytesSent()).toBe(size);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0]![0])).toContain(`${url}: the server ignores HTTP Range requests (it answered 200, not 206), so the whole file (${size} bytes) was fetched`);
      const b = await loadSafetensors(url);
      expect(warn).toHaveBeenCalledTimes(1); // once per URL
      disposeAll(ref, a, b);
      const msg = await errorOf(() => loadSafetensors(url, { maxWholeFileBytes: 100_000 }));
      expect(msg).toBe(
        `loadSafetensors: ${url}: the server ignored the HTTP Range request (it answered 200 with the whole file instead of 206) and the file is ${size} bytes, over maxWholeFileBytes (100000); ` +
          'serve the checkpoint from a server that supports Range requests, or raise maxWholeFileBytes (openModelDirectory(url, { maxWholeFileBytes }))',
      );
    } finally {
      warn.mockRestore();
    }
  });

  it('404, HTTP 500, a truncated body, a lying Content-Length: clear errors naming the URL, nothing left allocated', async () => {
    const missing = `${server.url}range/assets/tiny-inf-llava/nothere.safetensors`;
    expect(await errorOf(() => loadSafetensors(missing))).toBe(`loadSafetensors: ${missing}: not found (HTTP 404)`);
    const empty = `${server.url}range/assets/`;
    expect(await errorOf(() => loadSafetensors(empty))).toBe(`loadSafetensors: ${empty} holds neither model.safetensors.index.json nor model.safetensors`);
    expect(await errorOf(() => loadSafetensors(urlOf(CKPT, 'error500')))).toBe(`loadSafetensors: ${urlOf(CKPT, 'error500')}: HTTP 500 Internal Server Error (Range bytes=0-7)`);
    const truncated = urlOf(CKPT, 'truncated');
    expect(await errorOf(() => loadSafetensors(truncated))).toBe(`loadSafetensors: ${truncated}: truncated response to Range bytes=0-7: 4 of 8 bytes`);
    const lying = urlOf(CKPT, 'lying');
    expect(await errorOf(() => loadSafetensors(lying))).toMatch(new RegExp(`^loadSafetensors: ${lying.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: the response to Range bytes=0-7 ended early \\(truncated body\\?\\): `));
    // Past the header: the tensor reads fail the same way (the header is served whole here).
    const bytes = new Uint8Array(readFileSync(CKPT));
    const h = headerOf(bytes);
    const copy = join(tmp, 'copy.safetensors');
    await writeFile(copy, bytes);
    const fetchTruncatingData: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const range = new Headers(init?.headers).get('range') ?? '';
      if (!range.startsWith(`bytes=${h.dataOffset}`)) return res;
      const body = new Uint8Array(await res.arrayBuffer());
      return new Response(body.subarray(0, 10), { status: 206, headers: { 'Content-Range': res.headers.get('content-range')!, 'Content-Length': '10' } });
    };
    const u = urlOf(copy);
    const first = h.entries.reduce((a, e) => (e.begin < a.begin ? e : a));
    const msg = await errorOf(() => loadSafetensors(u, { prefix: first.name, fetch: fetchTruncatingData }));
    expect(msg).toBe(`loadSafetensors: ${u}: truncated response to Range bytes=${h.dataOffset}-${h.dataOffset + first.end - 1}: 10 of ${first.end - first.begin} bytes`);
    // The loaders of folders name the file too.
    const dir404 = `${server.url}range/assets/no-such-model/`;
    expect(await errorOf(() => loadLlama(dir404))).toBe(`readConfigJson: cannot read ${dir404}config.json: not found (HTTP 404)`);
    expect(await errorOf(() => loadTokenizer(dir404))).toBe(`loadTokenizer: missing tokenizer.json: no file at ${dir404}tokenizer.json`);
    expect(await errorOf(() => loadInfLlava(dir404))).toBe(`loadTokenizer: missing tokenizer.json: no file at ${dir404}tokenizer.json`);
  });

  it('hostile headers over HTTP and from a Blob: the same checks and messages as for a file, and only the first 8 bytes fetched for an impossible length', async () => {
    const build = (header: unknown, data = 0, n?: bigint) => {
      const h = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
      const out = new Uint8Array(8 + h.length + data);
      new DataView(out.buffer).setBigUint64(0, n ?? BigInt(h.length), true);
      out.set(h, 8);
      return out;
    };
    const i64 = build({ x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, 8);
    new DataView(i64.buffer).setBigInt64(i64.length - 8, 2n ** 40n, true);
    const cases: Record<string, Uint8Array> = {
      empty: new Uint8Array(0),
      short: new Uint8Array([1, 2, 3]),
      huge_length: build({}, 0, BigInt(SAFETENSORS_MAX_HEADER_BYTES) + 1n),
      past_end: build({}, 0, 1000n),
      not_json: build('{"a": '),
      not_utf8: (() => { const b = build('{"a":1}'); b[10] = 0xff; return b; })(),
      out_of_range: build({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8),
      overlap: build({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12),
      bad_dtype: build({ a: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, 8),
      i64_out_of_range: i64,
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const path = join(tmp, `hostile_${name}.safetensors`);
      await writeFile(path, bytes);
      const url = urlOf(path);
      server.reset();
      const viaPath = (await errorOf(() => loadSafetensors(path))).replace(path, 'FILE');
      const viaUrl = (await errorOf(() => loadSafetensors(url))).replace(url, 'FILE');
      const blob = new Blob([bytes as Uint8Array<ArrayBuffer>]);
      const viaBlob = (await errorOf(() => loadSafetensors(blob))).replace(`Blob (${bytes.length} bytes)`, 'FILE');
      expect(viaUrl, name).toBe(viaPath);
      expect(viaBlob, name).toBe(viaPath);
      if (name === 'huge_length' || name === 'past_end') expect(server.bytesSent(), name).toBe(8);
    }
  });

  it('a Blob and a File: the same tensors as readSafetensors, with and without a prefix; openByteSource reads ranges', async () => {
    const bytes = new Uint8Array(readFileSync(CKPT));
    const all = readSafetensors(bytes);
    const fromBlob = await loadSafetensors(new Blob([bytes]));
    await expectSameTensors(fromBlob.tensors, all.tensors);
    const file = new File([bytes], 'model.safetensors');
    const some = await loadSafetensors(file, { prefix: 'model.mm_projector.' });
    expect(Object.keys(some.tensors).length).toBeGreaterThan(0);
    for (const k of Object.keys(some.tensors)) expect(await bits(some.tensors[k]!)).toEqual(await bits(all.tensors[k]!));
    disposeAll(all, fromBlob, some);
    for (const src of [await openByteSource(file), await openByteSource(urlOf(CKPT)), await openByteSource(CKPT)]) {
      try {
        expect(src.size).toBe(bytes.length);
        expect(Array.from(await src.read(1000, 16))).toEqual(Array.from(bytes.subarray(1000, 1016)));
        await expect(src.read(bytes.length - 4, 8)).rejects.toThrow(/cannot read bytes|unexpected end of file/);
      } finally {
        await src.close?.();
      }
    }
  });
});

// ---------------------------------------------------------------------------------------
// Models: the same tensors and logits from a URL, Files and a path

await describeEachBackend('loaders from a base URL and from Files', () => {
  it('loadTokenizer: the same ids from a URL and from Files', async () => {
    const [a, b, c] = [await loadTokenizer(TOKENIZER), await loadTokenizer(`${urlOf(TOKENIZER)}/`), await loadTokenizer(pickedFolder(TOKENIZER))];
    for (const text of ['Hello world', 'What is unusual about this image? <|eot_id|> ünïcödé 🙂']) {
      expect(b.encode(text)).toEqual(a.encode(text));
      expect(c.encode(text)).toEqual(a.encode(text));
    }
    expect(b.eosIds).toEqual(a.eosIds);
    expect(b.chatTemplate).toBe(a.chatTemplate);
  });

  it('loadClipVision: the same features from a URL (no trailing slash) and from Files', async () => {
    const models = [await loadClipVision(CLIP_VISION), await loadClipVision(urlOf(CLIP_VISION)), await loadClipVision(pickedFolder(CLIP_VISION))];
    const pixels = tf.randomNormal([1, models[0]!.config.imageSize, models[0]!.config.imageSize, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
    try {
      const outs = models.map((m) => m.features(pixels));
      expect(await bits(outs[1]!)).toEqual(await bits(outs[0]!));
      expect(await bits(outs[2]!)).toEqual(await bits(outs[0]!));
      tf.dispose(outs);
    } finally {
      pixels.dispose();
      models.forEach((m) => m.dispose());
    }
  });

  it('loadLlama: the same logits from a URL (eager f32, and lazy bf16 through loadSafetensorsRaw) and from Files', async () => {
    for (const dir of [TINY_LLAMA, TINY_LLAMA_BF16]) {
      const models: Llama[] = [await loadLlama(dir), await loadLlama(`${urlOf(dir)}/`), await loadLlama(pickedFolder(dir))];
      try {
        const ids = [[1, 5, 9, 2, 7, 3]];
        const logits = models.map((m) => {
          const { logits: l, cache } = m.forward({ inputIds: ids });
          cache.dispose();
          return l;
        });
        expect(await bits(logits[1]!), dir).toEqual(await bits(logits[0]!));
        expect(await bits(logits[2]!), dir).toEqual(await bits(logits[0]!));
        tf.dispose(logits);
      } finally {
        models.forEach((m) => m.dispose());
      }
    }
    const raw = await loadSafetensorsRaw(`${urlOf(TINY_LLAMA_BF16)}/`);
    const local = await loadSafetensorsRaw(TINY_LLAMA_BF16);
    expect(raw.weights.names()).toEqual(local.weights.names());
    for (const n of local.weights.names()) expect(Array.from(raw.weights.get(n)!.bytes)).toEqual(Array.from(local.weights.get(n)!.bytes));
    raw.weights.dispose();
    local.weights.dispose();
  });

  it('loadInfLlava: a base URL and the Files of the picked folder answer exactly as the path does', async () => {
    const folder = await openModelDirectory(`${urlOf(TINY_INF_LLAVA)}/`);
    server.reset();
    const models: InfLlava[] = [await loadInfLlava(TINY_INF_LLAVA), await loadInfLlava(folder), await loadInfLlava(pickedFolder(TINY_INF_LLAVA))];
    const sent = server.bytesSent('/range/assets/tiny-inf-llava/');
    const total = readdirSync(TINY_INF_LLAVA).reduce((a, f) => a + readFileSync(join(TINY_INF_LLAVA, f)).length, 0);
    console.log(`loadInfLlava(base URL): ${server.requests.length} requests, ${sent} bytes sent for a ${total}-byte checkpoint folder`);
    expect(sent).toBeLessThanOrEqual(total + 4096); // each byte about once: headers are fetched once per folder
    const image = tf.randomUniform([40, 52, 3], 0, 256, 'int32', 3) as tf.Tensor3D;
    try {
      const results = [];
      for (const m of models) results.push(await m.generate({ image, question: 'What is unusual about this image?', maxNewTokens: 8 }));
      for (const r of results.slice(1)) {
        expect(r.tokens).toEqual(results[0]!.tokens);
        expect(r.text).toBe(results[0]!.text);
      }
      const visual = await Promise.all(models.map((m) => m.vision.encode(image)));
      expect(await bits(visual[1]!)).toEqual(await bits(visual[0]!));
      expect(await bits(visual[2]!)).toEqual(await bits(visual[0]!));
      tf.dispose(visual);
    } finally {
      image.dispose();
      models.forEach((m) => m.dispose());
    }
  });
});
