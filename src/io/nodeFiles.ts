/**
 * Node-only file helpers of the local sources (sources/path.ts, sources/open.ts) and the image
 * decoders. Node's `fs/promises` and `path` are taken with `process.getBuiltinModule`
 * (Node ≥ 20.16), which is not an import: bundlers see nothing, and importing the library in a
 * browser never touches Node. On older Node they are imported with a computed specifier
 * (equally invisible to bundlers).
 */
import { errorMessage as message } from '../util/format.js';

type Fs = typeof import('node:fs/promises');
type NodePath = typeof import('node:path');
export type FileHandle = import('node:fs/promises').FileHandle;

let modules: { fs: Fs; path: NodePath } | undefined;

/** What the readers say where local paths cannot be read. */
export const PATHS_NEED_NODE = 'paths need Node ≥ 20.16; in a browser pass a URL, a Blob/File or Files';

interface NodeProcess {
  versions?: { node?: string };
  getBuiltinModule?: (id: string) => unknown;
}

/** `globalThis.process` when this is Node (or a runtime that says it is), else undefined. */
export function nodeProcess(): NodeProcess | undefined {
  const p = (globalThis as { process?: NodeProcess }).process;
  return typeof p?.versions?.node === 'string' ? p : undefined;
}

/** Whether this runtime is Node (local paths can be read). */
export function isNode(): boolean {
  return nodeProcess() !== undefined;
}

/**
 * A Node built-in module by name (`'node:fs/promises'`): `process.getBuiltinModule` (Node ≥ 20.16),
 * else a computed-specifier import (older Node). Throws `Error(PATHS_NEED_NODE)` outside Node.
 */
export async function nodeBuiltin<T>(id: string): Promise<T> {
  const p = nodeProcess();
  if (!p) throw new Error(PATHS_NEED_NODE);
  if (typeof p.getBuiltinModule === 'function') {
    const m = p.getBuiltinModule(id);
    if (m) return m as T;
  }
  const name = id; // computed: bundlers leave it alone
  return (await import(/* webpackIgnore: true */ /* @vite-ignore */ name)) as T;
}

/** Node's `fs/promises` and `path`; `fn` and `browserHint` go into the error outside Node. */
export async function nodeModules(fn: string, browserHint: string): Promise<{ fs: Fs; path: NodePath }> {
  if (modules) return modules;
  if (!isNode()) throw new Error(`${fn}: ${PATHS_NEED_NODE} (or ${browserHint})`);
  try {
    const [fs, path] = await Promise.all([nodeBuiltin<Fs>('node:fs/promises'), nodeBuiltin<NodePath>('node:path')]);
    modules = { fs, path };
    return modules;
  } catch (e) {
    throw new Error(`${fn}: cannot load Node's fs and path modules: ${message(e)}`);
  }
}

/** Largest single `read()` (Node caps one read at 2 GiB). */
const MAX_READ_CHUNK = 1 << 30;

/** Reads exactly `length` bytes at `position`, looping over short reads. */
export async function readExactly(fh: FileHandle, length: number, position: number, ctx: string): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const want = Math.min(length - done, MAX_READ_CHUNK);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, done, want, position + done));
    } catch (e) {
      throw new Error(`${ctx}: read failed at byte ${position + done}: ${message(e)}`);
    }
    if (bytesRead === 0) throw new Error(`${ctx}: unexpected end of file at byte ${position + done} (file changed while reading?)`);
    done += bytesRead;
  }
  return buf;
}

/** What is at `path`. Call after {@link nodeModules}. */
export async function pathKind(path: string): Promise<'file' | 'dir' | 'none'> {
  try {
    const st = await modules!.fs.stat(path);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'none';
  } catch {
    return 'none';
  }
}

/** Resolves a shard file name from an index, refusing anything that leads outside `dir`. Call after {@link nodeModules}. */
export function shardPath(dir: string, shard: string, index: string, fn: string): string {
  const nodePath = modules!.path;
  const bad = (why: string) => new Error(`${fn}: ${index}: shard ${JSON.stringify(shard)} ${why}`);
  if (shard === '' || shard.includes('\0')) throw bad('is not a valid file name');
  if (nodePath.isAbsolute(shard) || nodePath.posix.isAbsolute(shard) || nodePath.win32.isAbsolute(shard)) {
    throw bad('is an absolute path; shards must be inside the checkpoint directory');
  }
  const resolved = nodePath.resolve(dir, shard);
  const rel = nodePath.relative(dir, resolved);
  if (rel === '' || rel === '..' || rel.startsWith(`..${nodePath.sep}`) || nodePath.isAbsolute(rel)) {
    throw bad('leads outside the checkpoint directory');
  }
  return resolved;
}
