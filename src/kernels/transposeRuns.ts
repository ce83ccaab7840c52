/**
 * A TypedArray transpose that copies contiguous runs: when the innermost axis stays innermost
 * (as it does for every DCM rearrangement after axis simplification), each run of `shape[last]`
 * elements is one `TypedArray.set`, i.e. a memcpy. Otherwise a tight strided loop.
 * Pure function, no tfjs: the cpu kernel wraps it, tests compare it with tf.transpose.
 */
export type NumericArray = Float32Array | Int32Array | Uint8Array;

export function transposeRuns<T extends NumericArray>(src: T, shape: readonly number[], perm: readonly number[], out: T): T {
  const r = shape.length;
  const total = src.length;
  if (r === 0 || total === 0) {
    out.set(src);
    return out;
  }
  const strides = new Array<number>(r);
  strides[r - 1] = 1;
  for (let i = r - 2; i >= 0; i--) strides[i] = strides[i + 1]! * shape[i + 1]!;
  const outShape = perm.map((p) => shape[p]!);
  const inStride = perm.map((p) => strides[p]!); // input stride of each output axis
  const inner = outShape[r - 1]!;
  const innerStride = inStride[r - 1]!;
  const runs = innerStride === 1 && inner >= 8;

  const idx = new Array<number>(r - 1).fill(0);
  let inOff = 0;
  for (let o = 0; o < total; o += inner) {
    if (runs) {
      out.set(src.subarray(inOff, inOff + inner), o);
    } else {
      for (let j = 0, s = inOff; j < inner; j++, s += innerStride) out[o + j] = src[s]!;
    }
    // Odometer over the outer output axes, keeping the input offset incrementally.
    for (let k = r - 2; k >= 0; k--) {
      idx[k]!++;
      inOff += inStride[k]!;
      if (idx[k]! < outShape[k]!) break;
      inOff -= idx[k]! * inStride[k]!;
      idx[k] = 0;
    }
  }
  return out;
}
