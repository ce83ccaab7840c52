/**
 * The WebAssembly SIMD kernels of `gemv.wat` (assembled into `gemv.wasm.ts`) and their
 * JavaScript fallbacks: bf16 → float32 decoding, and `y[m, N] = x[m, K] · Wᵀ` on packed
 * weights (bf16, q8, q4; docs/quantization.md) reading each weight once, for decode steps on
 * the CPU backends. Browser-safe: the module is compiled synchronously from its bytes (~2 KB).
 *
 * Packed weights allocated in a {@link WasmArenas} pool (what `LazyWeights.quantize` does) live
 * in a WebAssembly memory and are read in place; others are copied in a block of rows (~2 MB)
 * at a time, so they can live anywhere in JS memory.
 *
 * Measured on the project's 2-core machine: decoding 58.7 M bf16 values ~30 ms against ~105 ms
 * for the JS loop; the bf16 gemv 0.11 ns per weight in cache (~9 G multiply-adds/s on one core).
 */
import { checkPackShape, checkPackedWeight, valuesPerWord, type PackedFormat, type PackedWeight } from '../../quant/groups.js';
import { dequantizeBf16Into } from '../../quant/bf16.js';
import { dequantizeQ4Into } from '../../quant/q4.js';
import { dequantizeQ8Into } from '../../quant/q8.js';
import { GEMV_WASM_BASE64 } from './gemv.wasm.js';

const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Values per bf16 decode call: 2 MB of bf16 in the module's memory. */
const SIMD_BLOCK = 1 << 20;
/** Weight bytes per block of rows copied for a gemv call. */
const GEMV_BLOCK_BYTES = 2 << 20;

interface Kernels {
  bf16: (src: number, dst: number, n: number) => void;
  gemvBf16: (w: number, x: number, y: number, rows: number, cols: number) => void;
  gemvQ8: (w: number, s: number, x: number, y: number, rows: number, cols: number, gs: number, xs: number) => void;
  gemvQ4: (w: number, s: number, m: number, x: number, xg: number, y: number, rows: number, cols: number, gs: number, xs: number) => void;
}

interface Simd extends Kernels {
  mem: WebAssembly.Memory;
  bf16: (src: number, dst: number, n: number) => void;
  gemvBf16: (w: number, x: number, y: number, rows: number, cols: number) => void;
  gemvQ8: (w: number, s: number, x: number, y: number, rows: number, cols: number, gs: number, xs: number) => void;
  gemvQ4: (w: number, s: number, m: number, x: number, xg: number, y: number, rows: number, cols: number, gs: number, xs: number) => void;
  /** The module's memory as bytes, grown to at least `bytes`. */
  heap(bytes: number): Uint8Array;
}
let simd: Simd | null | undefined;
let compiled: WebAssembly.Module | null | undefined;

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const s = atob(GEMV_WASM_BASE64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** The compiled module (small: a synchronous compile is fine everywhere), or null without WebAssembly SIMD. */
function wasmModule(): WebAssembly.Module | null {
  if (compiled !== undefined) return compiled;
  compiled = null;
  try {
    const bytes = moduleBytes();
    if (IS_LITTLE_ENDIAN && typeof WebAssembly === 'object' && WebAssembly.validate(bytes)) compiled = new WebAssembly.Module(bytes);
  } catch {
    compiled = null;
  }
  return compiled;
}

/** The module's exports over `mem`. */
function instantiate(mod: WebAssembly.Module, mem: WebAssembly.Memory): Kernels {
  const e = new WebAssembly.Instance(mod, { env: { mem } }).exports;
  return { bf16: e.bf16 as Kernels['bf16'], gemvBf16: e.gemv_bf16 as Kernels['gemvBf16'], gemvQ8: e.gemv_q8 as Kernels['gemvQ8'], gemvQ4: e.gemv_q4 as Kernels['gemvQ4'] };
}

/** The kernels over a growable scratch memory, or null where WebAssembly SIMD is missing (or switched off by {@link setBf16Simd}). */
export function simdKernels(): Simd | null {
  if (simd !== undefined) return simd;
  simd = null;
  try {
    const mod = wasmModule();
    if (mod) {
      const mem = new WebAssembly.Memory({ initial: 1 });
      simd = {
        mem,
        ...instantiate(mod, mem),
        heap(n: number): Uint8Array {
          if (mem.buffer.byteLength < n) mem.grow(Math.ceil((n - mem.buffer.byteLength) / 65536));
          return new Uint8Array(mem.buffer);
        },
      };
    }
  } catch {
    simd = null; // no SIMD: JS loops instead
  }
  return simd;
}

/**
 * Use (true, the default) or bypass (false) the WebAssembly SIMD kernels — the bf16 decoder and
 * the bf16, q8 and q4 gemv — for tests and benchmarks. Returns whether they are now in use
 * (false where WebAssembly SIMD is missing). Without them bf16 is decoded by a JS loop and q8 /
 * q4 decode steps run a JS gemv.
 */
export function setBf16Simd(enabled: boolean): boolean {
  simd = enabled ? undefined : null;
  return simdKernels() != null;
}

/**
 * bf16 → float32 for `n` values: a bf16 is the upper half of a float32, so each output word is
 * the input half-word shifted left by 16 (exact; NaN/inf preserved). WebAssembly SIMD where
 * available, else a JS loop.
 */
export function bf16Into(bytes: Uint8Array, out: Float32Array, n: number): void {
  let done = 0;
  const s = simdKernels();
  if (s) {
    const heap = s.heap(6 * SIMD_BLOCK);
    while (n - done >= 8) {
      const m = Math.min(SIMD_BLOCK, (n - done) & ~7);
      heap.set(bytes.subarray(2 * done, 2 * (done + m)), 0);
      s.bf16(0, 2 * SIMD_BLOCK, m);
      out.set(new Float32Array(s.mem.buffer, 2 * SIMD_BLOCK, m), done);
      done += m;
    }
  }
  const dst = new Uint32Array(out.buffer, out.byteOffset, n);
  if (IS_LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) {
    const src = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    for (let i = done; i < n; i++) dst[i] = src[i]! << 16;
  } else {
    for (let i = done; i < n; i++) dst[i] = (bytes[2 * i]! << 16) | (bytes[2 * i + 1]! << 24);
  }
}

function checkX(fn: string, x: Float32Array, m: number, cols: number, what: string): void {
  if (!(x instanceof Float32Array)) throw new Error(`${fn}: x must be a Float32Array`);
  if (!Number.isInteger(m) || m < 1 || x.length !== m * cols) {
    throw new Error(`${fn}: x must hold m × ${cols} values for ${what}, got ${x.length} for m = ${m}`);
  }
}

const align16 = (n: number) => (n + 15) & ~15;

/**
 * `x · Wᵀ` on the bf16 bytes of `W` `[rows, cols]` (little-endian, as in a checkpoint; any byte
 * offset): `m` rows of `cols` float32 in, `m` rows of `rows` out. Undefined where the SIMD
 * kernel does not apply (`cols` not a multiple of 8, no WebAssembly SIMD).
 */
export function gemvBf16Bytes(bytes: Uint8Array, rows: number, cols: number, x: Float32Array, m: number, what = 'the weight'): Float32Array | undefined {
  const s = simdKernels();
  if (!s || cols % 8 !== 0) return undefined;
  checkX('gemvBf16Bytes', x, m, cols, what);
  const blockRows = Math.max(1, Math.floor(SIMD_BLOCK / cols));
  const xOff = 2 * blockRows * cols; // a multiple of 16
  const yOff = xOff + 4 * m * cols;
  let heap = s.heap(yOff + 4 * m * blockRows);
  new Float32Array(heap.buffer, xOff, m * cols).set(x);
  const out = new Float32Array(m * rows);
  for (let r0 = 0; r0 < rows; r0 += blockRows) {
    const n = Math.min(blockRows, rows - r0);
    heap = new Uint8Array(s.mem.buffer);
    heap.set(bytes.subarray(2 * r0 * cols, 2 * (r0 + n) * cols), 0);
    for (let i = 0; i < m; i++) s.gemvBf16(0, xOff + 4 * i * cols, yOff + 4 * i * n, n, cols);
    for (let i = 0; i < m; i++) out.set(new Float32Array(s.mem.buffer, yOff + 4 * i * n, n), i * rows + r0);
  }
  return out;
}

/**
 * `x · dequant(W)ᵀ` in JavaScript: each row of `W` dequantised (exactly as
 * `dequantizeRows`) and multiplied with float64 sums, rounded to float32 at the end.
 */
export function packedGemvJs(p: PackedWeight, x: Float32Array, m: number): Float32Array {
  checkPackedWeight(p, 'packedGemvJs');
  checkX('packedGemvJs', x, m, p.cols, `a ${p.format} [${p.rows}, ${p.cols}] weight`);
  const K = p.cols;
  const row = new Float32Array(K);
  const out = new Float32Array(m * p.rows);
  const into = p.format === 'q8' ? dequantizeQ8Into : p.format === 'q4' ? dequantizeQ4Into : dequantizeBf16Into;
  for (let n = 0; n < p.rows; n++) {
    into(p, n, 1, row);
    for (let i = 0; i < m; i++) {
      let acc = 0;
      const base = i * K;
      for (let k = 0; k < K; k++) acc += row[k]! * x[base + k]!;
      out[i * p.rows + n] = acc;
    }
  }
  return out;
}

/** Bytes at the start of each arena for the input (fixed point), its group sums and a block of outputs. */
const ARENA_SCRATCH = 1 << 20;
/** Largest arena size (a tensor larger than this gets an arena of its own size). */
const ARENA_BYTES = 512 << 20;

interface Arena {
  mem: WebAssembly.Memory;
  k: Kernels;
  used: number;
  size: number;
}
const arenas = new WeakMap<ArrayBufferLike, Arena>();

/**
 * A pool of fixed-size WebAssembly memories ("arenas", 16 MB to 512 MB) that packed weights are
 * allocated in, so that the gemv reads them in place instead of copying each block of rows
 * into the kernel's memory (for LLaMA-3-8B q4, 4.7 GB of copies per decoded token). Each arena
 * has its own instance of the kernels and a 1 MB scratch region at its start. The memory is
 * freed when the pool and every weight allocated in it are unreachable. @internal
 */
export class WasmArenas {
  private list: Arena[] = [];

  /**
   * A zeroed packed weight whose arrays live in an arena, or undefined where WebAssembly SIMD is
   * missing or the memory cannot be had (then allocate it in JS memory: `allocatePacked`).
   */
  allocate(format: PackedFormat, rows: number, cols: number, name?: string): PackedWeight | undefined {
    const mod = wasmModule();
    if (!mod) return undefined;
    const groupSize = checkPackShape('WasmArenas.allocate', format, rows, cols, name);
    const dataBytes = (4 * rows * cols) / valuesPerWord(format);
    const groups = format === 'bf16' ? 0 : rows * (cols / groupSize);
    const need = align16(dataBytes) + align16(4 * groups) * (format === 'q4' ? 2 : format === 'q8' ? 1 : 0);
    let a = this.list.find((x) => x.size - x.used >= need);
    if (!a) {
      // Arenas grow with the pool (16 MB, then twice what is held, up to 512 MB): a small model takes little.
      const target = Math.min(ARENA_BYTES, Math.max(16 << 20, 2 * this.byteLength));
      const pages = Math.ceil(Math.max(target, ARENA_SCRATCH + need) / 65536);
      let mem: WebAssembly.Memory;
      try {
        mem = new WebAssembly.Memory({ initial: pages, maximum: pages });
      } catch {
        return undefined; // over the engine's limits: JS memory instead
      }
      a = { mem, k: instantiate(mod, mem), used: ARENA_SCRATCH, size: pages * 65536 };
      arenas.set(mem.buffer, a);
      this.list.push(a);
    }
    const buf = a.mem.buffer;
    let off = a.used;
    const take = (bytes: number) => {
      const at = off;
      off += align16(bytes);
      return at;
    };
    const data = new Int32Array(buf, take(dataBytes), dataBytes / 4);
    let out: PackedWeight = { format, rows, cols, groupSize, data };
    if (format !== 'bf16') out = { ...out, scales: new Float32Array(buf, take(4 * groups), groups) };
    if (format === 'q4') out = { ...out, mins: new Float32Array(buf, take(4 * groups), groups) };
    a.used = off;
    return out;
  }

  /** Bytes reserved in arenas (allocated weights and scratch regions). */
  get byteLength(): number {
    return this.list.reduce((n, a) => n + a.used, 0);
  }

  /** Forgets the arenas (their memory is freed once no weight allocated in them is reachable). */
  dispose(): void {
    this.list = [];
  }
}

/** The arena holding all of `p`'s arrays, if any. */
function arenaOf(p: PackedWeight): Arena | undefined {
  const a = arenas.get(p.data.buffer);
  if (!a || (p.scales && p.scales.buffer !== p.data.buffer) || (p.mins && p.mins.buffer !== p.data.buffer)) return undefined;
  return a;
}

/**
 * Writes `x` (m rows of K) for the quantised kernels: 30-bit fixed point, X = round(x · 2^29 /
 * max|x|) = hi · 2^15 + lo, in the kernel's order (see gemv.wat), into `xq` (2·m·K int16), and
 * for q4 the sums of x per group into `xg` (m · K/G). Returns each row's max|x| / 2^29, or
 * undefined when x holds NaN or an infinity (then the JS gemv propagates it as float math does).
 */
function fixedPointInput(p: PackedWeight, x: Float32Array, m: number, xq: Int16Array, xg: Float32Array): Float64Array | undefined {
  const K = p.cols;
  const G = p.groupSize;
  const ng = K / G;
  const xs = new Float64Array(m);
  const step = p.format === 'q8' ? 8 : 16; // q8: per 8 inputs 8 hi, 8 lo; q4: per 16, hi even, hi odd, lo even, lo odd
  for (let i = 0; i < m; i++) {
    const base = i * K;
    let amax = 0;
    for (let k = base; k < base + K; k++) amax = Math.max(amax, Math.abs(x[k]!));
    if (!(amax <= 3.4028234663852886e38)) return undefined;
    xs[i] = amax / 2 ** 29;
    const f = amax > 0 ? 2 ** 29 / amax : 0;
    for (let k = 0; k < K; k += step) {
      const o = 2 * (base + k);
      for (let j = 0; j < step; j++) {
        const X = Math.round(x[base + k + j]! * f);
        const hi = X >> 15;
        const at = step === 8 ? j : (j & 1) * 8 + (j >> 1);
        xq[o + at] = hi;
        xq[o + step + at] = X - hi * 32768;
      }
    }
    if (p.format === 'q4') {
      for (let g = 0; g < ng; g++) {
        let acc = 0;
        for (let k = base + g * G; k < base + (g + 1) * G; k++) acc += x[k]!;
        xg[i * ng + g] = acc;
      }
    }
  }
  return xs;
}

/**
 * `x · dequant(W)ᵀ` for a packed weight `W` `[N, K]`: `x` holds `m` rows of `K` float32, the
 * result `m` rows of `N`. The WebAssembly SIMD kernels where available (in place on weights
 * allocated in a {@link WasmArenas} pool, else on blocks of rows copied in), else
 * {@link packedGemvJs} (also for bf16 with `K` not a multiple of 8, q4 with `K` not a multiple
 * of 16, and inputs holding NaN or infinities).
 */
export function packedGemv(p: PackedWeight, x: Float32Array, m: number): Float32Array {
  const fn = 'packedGemv';
  checkPackedWeight(p, fn);
  const what = `a ${p.format} [${p.rows}, ${p.cols}] weight`;
  checkX(fn, x, m, p.cols, what);
  const s = simdKernels();
  if (!s) return packedGemvJs(p, x, m);
  if (p.format === 'bf16') {
    const bytes = new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength);
    return gemvBf16Bytes(bytes, p.rows, p.cols, x, m, what) ?? packedGemvJs(p, x, m);
  }
  const { rows: N, cols: K, groupSize: G } = p;
  if (p.format === 'q4' && K % 16 !== 0) return packedGemvJs(p, x, m); // the q4 kernel takes 16 codes per step
  const ng = K / G;
  const xgOff = align16(4 * m * K); // x: two int16 halves per input
  const out = new Float32Array(m * N);
  const run = (k: Kernels, w: number, sc: number, mn: number, r0: number, n: number, buf: ArrayBufferLike, yOff: number, xs: Float64Array) => {
    for (let i = 0; i < m; i++) {
      if (p.format === 'q8') k.gemvQ8(w, sc, 4 * i * K, yOff + 4 * i * n, n, K, G, xs[i]!);
      else k.gemvQ4(w, sc, mn, 4 * i * K, xgOff + 4 * i * ng, yOff + 4 * i * n, n, K, G, xs[i]!);
    }
    for (let i = 0; i < m; i++) out.set(new Float32Array(buf, yOff + 4 * i * n, n), i * N + r0);
  };

  // In place: the weights are in an arena; the input and a block of outputs in its scratch region.
  const a = arenaOf(p);
  const yOffArena = align16(xgOff + 4 * m * ng);
  if (a && yOffArena + 4 * m * 2 <= ARENA_SCRATCH) {
    const buf = a.mem.buffer;
    const xs = fixedPointInput(p, x, m, new Int16Array(buf, 0, 2 * m * K), new Float32Array(buf, xgOff, m * ng));
    if (!xs) return packedGemvJs(p, x, m);
    const chunk = Math.floor((ARENA_SCRATCH - yOffArena) / (4 * m));
    const rowBytes = p.data.byteLength / N;
    for (let r0 = 0; r0 < N; r0 += chunk) {
      const n = Math.min(chunk, N - r0);
      const mn = p.mins ? p.mins.byteOffset + 4 * r0 * ng : 0;
      run(a.k, p.data.byteOffset + r0 * rowBytes, p.scales!.byteOffset + 4 * r0 * ng, mn, r0, n, buf, yOffArena, xs);
    }
    return out;
  }

  // Copied: a block of rows (~2 MB) at a time into the scratch memory, after the input.
  const rowBytes = p.format === 'q8' ? K : K / 2;
  const blockRows = Math.min(N, Math.max(2, Math.floor(GEMV_BLOCK_BYTES / rowBytes)));
  const wOff = align16(xgOff + 4 * m * ng);
  const sOff = align16(wOff + blockRows * rowBytes);
  const mOff = align16(sOff + 4 * blockRows * ng);
  const yOff = align16(mOff + (p.format === 'q4' ? 4 * blockRows * ng : 0));
  s.heap(yOff + 4 * m * blockRows);
  const buf = s.mem.buffer;
  const xs = fixedPointInput(p, x, m, new Int16Array(buf, 0, 2 * m * K), new Float32Array(buf, xgOff, m * ng));
  if (!xs) return packedGemvJs(p, x, m);
  const heap = new Uint8Array(buf);
  const data = new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  for (let r0 = 0; r0 < N; r0 += blockRows) {
    const n = Math.min(blockRows, N - r0);
    heap.set(data.subarray(r0 * rowBytes, (r0 + n) * rowBytes), wOff);
    new Float32Array(buf, sOff, n * ng).set(p.scales!.subarray(r0 * ng, (r0 + n) * ng));
    if (p.mins) new Float32Array(buf, mOff, n * ng).set(p.mins.subarray(r0 * ng, (r0 + n) * ng));
    run(s, wOff, sOff, mOff, r0, n, buf, yOff, xs);
  }
  return out;
}
