/**
 * Node-only file helpers shared by the checkpoint readers (`loadSafetensors`, the lazy LLaMA
 * weight store). `node:fs/promises` and `node:path` are imported on first use, so importing the
 * library in a browser never touches them.
 */
type Fs = typeof import('node:fs/promises');
type NodePath = typeof import('node:path');
export type FileHandle = import('node:fs/promises').FileHandle;

let modules: { fs: Fs; path: NodePath } | undefined;

export function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `node:fs/promises` and `node:path`; `fn` and `browserHint` go into the error outside Node. */
export async function nodeModules(fn: string, browserHint: string): Promise<{ fs: Fs; path: NodePath }> {
  if (modules) return modules;
  try {
    const [fs, path] = await Promise.all([import('node:fs/promises'), import('node:path')]);
    modules = { fs, path };
    return modules;
  } catch (e) {
    throw new Error(`${fn}: needs Node's fs and path modules (Node only; in a browser ${browserHint}): ${message(e)}`);
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
