/**
 * Local files and folders (Node). No Node built-in is imported: they come through
 * `process.getBuiltinModule` (see ../nodeFiles.ts), so a browser bundle pulls in nothing.
 */
import { errorMessage as message } from '../../util/format.js';
import { SAFETENSORS_MAX_HEADER_BYTES } from '../safetensors.js';
import { nodeModules, pathKind as kind, readExactly, shardPath, type FileHandle } from '../nodeFiles.js';
import {
  FIND_CHECKPOINT,
  SAFETENSORS_INDEX_FILE,
  SAFETENSORS_SINGLE_FILE,
  parseIndex,
  type CheckpointFile,
  type FindsCheckpoint,
  type ResolvedCheckpoint,
} from './checkpoint.js';
import { SourceError, type ByteSource, type ModelDirectory } from './types.js';

/** What a loader says outside Node when given a path. */
const CHECKPOINT_HINT = 'use readSafetensors on fetched bytes';

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
class PathDirectory implements ModelDirectory, FindsCheckpoint {
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

  whyMissing(): string {
    return 'no such file';
  }

  /** By the path itself: it may name one file; shard names follow Node's path rules. */
  [FIND_CHECKPOINT](fn: string): Promise<ResolvedCheckpoint> {
    return resolvePath(this.name, fn);
  }
}

/** The path of a local folder made here, else undefined (opened as one file, such a folder is its path). @internal */
export function localPathOf(v: unknown): string | undefined {
  return v instanceof PathDirectory ? v.name : undefined;
}

/** Opens a local file (it must exist). @internal */
export async function openPathFile(path: string): Promise<ByteSource> {
  return (await PathSource.open(path, false))!;
}

/** A local folder; outside Node an error naming `fn` and `hint`. @internal */
export async function pathDirectory(path: string, fn: string, hint: string): Promise<ModelDirectory> {
  const { fs, path: nodePath } = await nodeModules(fn, hint);
  return new PathDirectory(path, nodePath, fs);
}

function pathFile(path: string): CheckpointFile {
  return { name: path, open: () => openPathFile(path) };
}

/**
 * The checkpoint at a local path (a file, or a folder): `stat`, absolute names, shard names
 * checked with Node's path module (on POSIX a backslash is part of a name), symlinks followed.
 * @internal
 */
export async function resolvePath(path: string, fn: string): Promise<ResolvedCheckpoint> {
  const { fs, path: nodePath } = await nodeModules(fn, CHECKPOINT_HINT);
  const k = await kind(path);
  if (k === 'file') return { kind: 'single', file: pathFile(path) };
  if (k === 'none') throw new Error(`${fn}: ${path} is neither a file nor a directory`);
  const dir = nodePath.resolve(path);
  const index = nodePath.join(dir, SAFETENSORS_INDEX_FILE);
  if ((await kind(index)) === 'none') {
    const single = nodePath.join(dir, SAFETENSORS_SINGLE_FILE);
    if ((await kind(single)) === 'none') {
      throw new Error(`${fn}: ${path} holds neither ${SAFETENSORS_INDEX_FILE} nor ${SAFETENSORS_SINGLE_FILE}`);
    }
    return { kind: 'single', file: pathFile(single) };
  }
  let text: string;
  try {
    const st = await fs.stat(index);
    if (st.size > SAFETENSORS_MAX_HEADER_BYTES) {
      throw new Error(`is ${st.size} bytes, over the limit of ${SAFETENSORS_MAX_HEADER_BYTES}`);
    }
    text = await fs.readFile(index, 'utf8');
  } catch (e) {
    throw new Error(`${fn}: cannot read ${index}: ${message(e)}`);
  }
  const { metadata, shards } = parseIndex(text, index, fn);
  const files = new Map<string, CheckpointFile>();
  const weightMap = new Map<string, CheckpointFile>();
  for (const [name, shard] of shards) {
    const file = shardPath(dir, shard, index, fn); // validate every entry, wanted or not
    let f = files.get(file);
    if (!f) files.set(file, (f = pathFile(file)));
    weightMap.set(name, f);
  }
  return { kind: 'sharded', index, metadata, weightMap };
}
