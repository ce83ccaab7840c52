/**
 * A guard for the `wasm` backend's heap. tfjs-backend-wasm allocates every tensor with the
 * module's `_malloc`; an allocation the 4 GiB WebAssembly heap cannot hold traps or aborts the
 * module ("table index is out of bounds", then `Aborted()`), and an aborted module fails every
 * later call until the process restarts — one oversized input poisons the backend for good.
 * The guard refuses such an allocation with an ordinary JS error before it reaches the
 * allocator, so the failing call throws and the next one works.
 *
 * Browser-safe (tfjs-core only). Installed by `useBackend('wasm')` and by `generate` on wasm;
 * call {@link guardWasmHeap} yourself after setting the wasm backend up by hand.
 */
import { findBackend } from '@tensorflow/tfjs-core';

/** tfjs-backend-wasm's Emscripten module, as far as the guard uses it. */
interface WasmModule {
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  /** A view of the whole heap (replaced when the heap grows). */
  HEAPU8: Uint8Array;
  /** The raw exports: Emscripten's `_malloc` is a stub that replaces itself with `asm.malloc` on first call. */
  asm?: { malloc?: (bytes: number) => number; free?: (ptr: number) => void };
}

const GUARDED = Symbol.for('inf-llava.wasmHeapGuard');
/** Emscripten's heap limit for a 32-bit module grown on demand (tfjs-backend-wasm 4.x: getHeapMax()). */
export const WASM_HEAP_MAX_BYTES = 4294901760;
/**
 * Left free for the kernels' own scratch buffers, which the guard does not see. Emscripten's
 * malloc aborts (it does not return 0) when the heap cannot grow, so the guard only lets an
 * allocation through when the heap could hold it even if nothing freed inside it were reusable:
 * heap size + request + margin ≤ limit.
 */
const SCRATCH_MARGIN_BYTES = 64 * 2 ** 20;

const MiB = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

/**
 * Installs the heap guard on the registered `wasm` backend (idempotent). Returns false when
 * no wasm backend is registered or initialised yet.
 */
export function guardWasmHeap(): boolean {
  const backend = findBackend('wasm') as { wasm?: WasmModule & { [GUARDED]?: true } } | null;
  const wasm = backend?.wasm;
  if (!wasm || typeof wasm._malloc !== 'function' || typeof wasm._free !== 'function') return false;
  if (wasm[GUARDED]) return true;
  // The raw exports, not the self-replacing stubs (a stub would overwrite the guard on first call).
  const malloc = wasm.asm?.malloc ?? wasm._malloc.bind(wasm);
  const free = wasm.asm?.free ?? wasm._free.bind(wasm);
  const sizes = new Map<number, number>(); // pointer → bytes, for what tfjs allocated through _malloc
  let live = 0;
  wasm._malloc = (bytes: number): number => {
    const heap = wasm.HEAPU8.byteLength;
    if (!(bytes >= 0) || heap + bytes + SCRATCH_MARGIN_BYTES > WASM_HEAP_MAX_BYTES) {
      throw new RangeError(
        `wasm backend: cannot allocate ${MiB(bytes)} (${bytes} bytes): the WebAssembly heap has grown to ${MiB(heap)} (${MiB(live)} of it live tensors) and cannot grow past ${MiB(WASM_HEAP_MAX_BYTES)}; refused before the allocator could abort the module`,
      );
    }
    const ptr = malloc(bytes);
    const key = ptr >>> 0;
    sizes.set(key, bytes);
    live += bytes;
    return ptr;
  };
  wasm._free = (ptr: number): void => {
    const key = ptr >>> 0;
    const bytes = sizes.get(key);
    if (bytes !== undefined) {
      sizes.delete(key);
      live -= bytes;
    }
    free(ptr);
  };
  wasm[GUARDED] = true;
  return true;
}
