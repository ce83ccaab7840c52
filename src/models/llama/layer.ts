/**
 * One LLaMA decoder layer, pre-norm, as transformers' `LlamaDecoderLayer`:
 *
 *   x = x + attention(rmsNorm(x))     input_layernorm, self_attn
 *   x = x + mlp(rmsNorm(x))           post_attention_layernorm, mlp
 *
 * The residual adds are the o and down projections' epilogues, SwiGLU's product gate's.
 */
import { concat, reshape, slice, tidy, transpose, zeros, type Tensor, type Tensor2D, type Tensor3D, type Tensor4D } from '@tensorflow/tfjs-core';
import { attention } from '../../ops/attention.js';
import { kvCacheWrite } from '../../ops/kvCache.js';
import { rmsNorm } from '../../ops/rmsNorm.js'; // x · rsqrt(mean(x²) + eps) · w: one kernel on webgpu
import type { LlamaConfig } from './config.js';
import { applyRope } from './rope.js';
import type { LayerWeights } from './weights.js';

/** cos and signed sin tables `[T, hd]` for the new positions (./rope.ts). */
export interface RopeTables {
  cos: Tensor2D;
  sinSigned: Tensor2D;
}

/**
 * Where this step's keys and values go: `past` holds positions `[0, P)` (absent: none), the
 * result `room ≥ P + T` positions. In place (webgpu): written into a preallocated buffer;
 * else concatenated (`room = P + T`).
 */
export interface KvStep {
  past?: { k: Tensor4D; v: Tensor4D };
  P: number;
  room: number;
  inPlace: boolean;
}

/**
 * x [B, T, d] → [x', keys, values], keys/values [B, kvH, room, hd] holding positions
 * [0, P + T). Nested tidies free each half's intermediates as soon as it is done: a 4,000-token
 * prefill of LLaMA-3-8B holds ~1 GB of [T, 14336] MLP buffers per layer otherwise.
 */
export function decoderLayer(x: Tensor3D, w: LayerWeights, c: LlamaConfig, rope: RopeTables, kv: KvStep): Tensor[] {
  const [x1, k, v] = tidy(() => attentionBlock(x, w, c, rope, kv));
  const out = tidy(() => mlpBlock(x1 as Tensor3D, w, c));
  return [out, k!, v!];
}

/** x + o(attention(rope(q(h)), rope(k(h)), v(h))), h = rmsNorm(x): [x', keys, values]. */
function attentionBlock(x: Tensor3D, w: LayerWeights, c: LlamaConfig, rope: RopeTables, kv: KvStep): Tensor[] {
  const [B, T] = x.shape; // x: [B, T, d]
  const { numAttentionHeads: H, headDim: hd } = c;
  const heads = (t: Tensor, n: number) => transpose(reshape(t, [B, T, n, hd]), [0, 2, 1, 3]) as Tensor4D; // [B, T, n·hd] → [B, n, T, hd]

  const h = rmsNorm(x, w.inputNorm, c.rmsNormEps); // [B, T, d]
  const q = applyRope(heads(w.q.apply(h), H), rope.cos, rope.sinSigned); // [B, H, T, hd]
  const [k, v] = keysValues(h, w, c, rope, kv, heads); // [B, kvH, room, hd], positions [0, P + T) valid
  // Causal, grouped-query (query head h reads kv head ⌊h / rep⌋), memory-bounded: a long
  // prompt runs in query × key blocks with an online softmax, never a [H, T, S] score tensor.
  const y = attention(q, k, v, { causal: true, scale: 1 / Math.sqrt(hd), ...(kv.inPlace ? { validKeys: kv.P + T } : {}) }); // [B, H, T, hd]
  const merged = reshape(transpose(y, [0, 2, 1, 3]), [B, T, H * hd]); // [B, T, H·hd]
  return [w.o.apply(merged, { residual: x }), k, v]; // x + o(merged): [B, T, d]
}

/** This step's keys (rotated) and values appended to the past ones: each [B, kvH, room, hd]. */
function keysValues(h: Tensor3D, w: LayerWeights, c: LlamaConfig, rope: RopeTables, kv: KvStep, heads: (t: Tensor, n: number) => Tensor4D): [Tensor4D, Tensor4D] {
  const [B, T] = h.shape;
  const { numKeyValueHeads: kvH, headDim: hd } = c;
  const { past, P, room } = kv;
  if (kv.inPlace) {
    // The new keys (RoPE applied in the write) and values go straight into the cache buffer.
    const target = (t: Tensor4D | undefined) => {
      if (t && t.shape[2] === room) return t;
      const fresh = zeros([B, kvH, room, hd]) as Tensor4D; // a new or a grown cache
      return t ? kvCacheWrite(fresh, slice(t, [0, 0, 0, 0], [-1, -1, P, -1]) as Tensor4D, 0) : fresh;
    };
    const bthd = (t: Tensor) => reshape(t, [B, T, kvH, hd]) as Tensor4D; // no head transpose
    const k = kvCacheWrite(target(past?.k), bthd(w.k.apply(h)), P, { layout: 'BTHD', rope });
    const v = kvCacheWrite(target(past?.v), bthd(w.v.apply(h)), P, { layout: 'BTHD' });
    return [k, v];
  }
  const valid = (t: Tensor4D) => (t.shape[2] === P ? t : (slice(t, [0, 0, 0, 0], [-1, -1, P, -1]) as Tensor4D));
  const kNew = applyRope(heads(w.k.apply(h), kvH), rope.cos, rope.sinSigned); // [B, kvH, T, hd]
  const vNew = heads(w.v.apply(h), kvH); // [B, kvH, T, hd]
  return past ? [concat([valid(past.k), kNew], 2), concat([valid(past.v), vNew], 2)] : [kNew, vNew]; // [B, kvH, P + T, hd]
}

/** x + down(silu(gate(h)) ⊙ up(h)), h = rmsNorm(x): [B, T, d]. */
function mlpBlock(x: Tensor3D, w: LayerWeights, c: LlamaConfig): Tensor3D {
  const h = rmsNorm(x, w.postNorm, c.rmsNormEps); // [B, T, d]
  // SwiGLU as linear epilogues: silu(h·W_gᵀ) ⊙ (h·W_uᵀ) in the gate projection, the residual in down's.
  const act = tidy(() => {
    const up = w.up.apply(h); // [B, T, I]
    return w.gate.apply(h, { activation: 'silu', multiply: up }); // [B, T, I]
  });
  return w.down.apply(act, { residual: x }); // [B, T, d]
}
