/**
 * A deliberately naive DEM written from docs/spec.md with different tfjs ops than the library:
 * windows by strided slicing, one head at a time, scale applied to the scores. Used to check
 * the batched implementation on random configurations beyond the PyTorch fixtures.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DemAttentionWeights, Linear } from '../src/index.js';

const lin = (x: tf.Tensor2D, l: Linear) => {
  const y = tf.matMul(x, tf.transpose(l.weight));
  return l.bias ? tf.add(y, l.bias) : y;
};

function window(map: tf.Tensor4D, rows: number, cols: number, r: number, c: number, kind: 'local' | 'global'): tf.Tensor4D {
  const [B, H, W, d] = map.shape;
  const h = H / rows;
  const w = W / cols;
  return kind === 'local'
    ? tf.slice(map, [0, r * h, c * w, 0], [B, h, w, d])
    : (tf.stridedSlice(map, [0, r, c, 0], [B, H, W, d], [1, rows, cols, 1]) as tf.Tensor4D);
}

/** MHA(q, kv) for one window of one image: q, kv `[t, d]`. */
function mha(q: tf.Tensor2D, kv: tf.Tensor2D, w: DemAttentionWeights): tf.Tensor2D {
  const d = q.shape[1];
  const dk = d / w.heads;
  const Q = lin(q, w.query);
  const K = lin(kv, w.key);
  const V = lin(kv, w.value);
  const heads: tf.Tensor2D[] = [];
  for (let hd = 0; hd < w.heads; hd++) {
    const part = (x: tf.Tensor) => tf.slice(x, [0, hd * dk], [-1, dk]) as tf.Tensor2D;
    const scores = tf.div(tf.matMul(part(Q), part(K), false, true), Math.sqrt(dk));
    heads.push(tf.matMul(tf.softmax(scores), part(V)));
  }
  const o = lin(tf.concat(heads, 1) as tf.Tensor2D, w.output);
  const x = tf.add(o, q);
  const mean = tf.mean(x, -1, true);
  const variance = tf.mean(tf.square(tf.sub(x, mean)), -1, true);
  const normed = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, w.norm.eps ?? 1e-5)));
  return tf.add(tf.mul(normed, w.norm.weight), w.norm.bias) as tf.Tensor2D;
}

/** Enhances `qMap` by `kvMap` window by window and writes each window back in place. */
export function naiveEnhance(qMap: tf.Tensor4D, kvMap: tf.Tensor4D, w: DemAttentionWeights, rows: number, cols: number, kind: 'local' | 'global'): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, H, W, d] = qMap.shape;
    const h = H / rows;
    const wd = W / cols;
    const out = tf.buffer([B, H, W, d]);
    for (let b = 0; b < B; b++) {
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const one = (m: tf.Tensor4D) => tf.reshape(tf.slice(window(m, rows, cols, r, c, kind), [b, 0, 0, 0], [1, -1, -1, -1]), [h * wd, d]) as tf.Tensor2D;
          const res = mha(one(qMap), one(kvMap), w).dataSync();
          for (let u = 0; u < h; u++)
            for (let v = 0; v < wd; v++) {
              const [y, x] = kind === 'local' ? [r * h + u, c * wd + v] : [r + u * rows, c + v * cols];
              for (let ch = 0; ch < d; ch++) out.set(res[(u * wd + v) * d + ch]!, b, y, x, ch);
            }
        }
      }
    }
    return out.toTensor() as tf.Tensor4D;
  });
}
