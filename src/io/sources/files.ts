/** Blobs and Files: one `Blob`/`File`, or the `File`s of a picked folder. */
import { errorMessage as message } from '../../util/format.js';
import { checkRange } from './ranges.js';
import { SourceError, isBlob, isUrlObject, type ByteSource, type ModelDirectory } from './types.js';

/** The `File`s of `v` when it is a list of them, else undefined (a list holding anything else throws). @internal */
export function filesOf(v: unknown, fn: string): File[] | undefined {
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

/** A `Blob`/`File` as a source (named by its path or name unless `name` is given). @internal */
export function blobSource(blob: Blob, name?: string): ByteSource {
  return new BlobSource(blob, name);
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

  whyMissing(): string {
    return 'not among the given files';
  }
}

/** The `File`s of a folder as a directory; errors (an empty list, two files of one name) name `fn`. @internal */
export function filesDirectory(files: File[], fn: string): ModelDirectory {
  return new FilesDirectory(files, fn);
}
