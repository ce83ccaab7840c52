// Backend-independent: state-dict names, init statistics and their errors (cpu backend).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { initSpatialEmbed, spatialEmbedFromStateDict, spatialEmbedToStateDict } from '../src/index.js';

const OFFICIAL = [
  'attention.linears.0.weight', 'attention.linears.0.bias', 'attention.linears.1.weight', 'attention.linears.1.bias',
  'attention.linears.2.weight', 'attention.linears.2.bias', 'attention.linears.3.weight', 'attention.linears.3.bias',
  'attention.ln.weight', 'attention.ln.bias', 'ffn_crop.0.weight', 'ffn_crop.0.bias', 'ffn_crop.2.weight', 'ffn_crop.2.bias',
  'ffn_stride.0.weight', 'ffn_stride.0.bias', 'ffn_stride.2.weight', 'ffn_stride.2.bias', 'ln_fuse.weight', 'ln_fuse.bias',
];

describe('DEM weights', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('initSpatialEmbed makes the official names and shapes; state dicts round-trip under any prefix', () => {
    const before = tf.memory().numTensors;
    const w = initSpatialEmbed(64, { seed: 1 });
    const dict = spatialEmbedToStateDict(w);
    expect(Object.keys(dict).sort()).toEqual(OFFICIAL.map((k) => `model.spatial_embed.${k}`).sort());
    expect(dict['model.spatial_embed.ffn_crop.0.weight']!.shape).toEqual([4, 64]);
    expect(dict['model.spatial_embed.ffn_crop.2.weight']!.shape).toEqual([32, 4]);
    const back = spatialEmbedFromStateDict(dict);
    expect(back.attention.heads).toBe(8);
    expect(back.attention.key.weight).toBe(w.attention.key.weight); // same tensors, no copies
    expect(back.fuse.local.length).toBe(2);
    const bare = spatialEmbedFromStateDict(spatialEmbedToStateDict(w, ''), { heads: 4 });
    expect(bare.attention.heads).toBe(4);
    const extra = { ...dict, 'model.mm_projector.0.weight': dict['model.spatial_embed.ln_fuse.weight']! };
    expect(() => spatialEmbedFromStateDict(extra)).not.toThrow(); // outside the prefix: ignored
    tf.dispose(Object.values(dict));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('initSpatialEmbed follows PyTorch defaults and is reproducible with a seed', () => {
    const a = initSpatialEmbed(128, { seed: 7 });
    const b = initSpatialEmbed(128, { seed: 7 });
    const q = a.attention.query.weight.dataSync();
    expect(Array.from(q)).toEqual(Array.from(b.attention.query.weight.dataSync()));
    const bound = 1 / Math.sqrt(128);
    expect(Math.max(...Array.from(q).map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...Array.from(q).map(Math.abs))).toBeGreaterThan(0.9 * bound); // uniform fills the range
    const hidden = a.fuse.local[1]!.weight.dataSync(); // fan_in = 8
    expect(Math.max(...Array.from(hidden).map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(8));
    expect(Array.from(a.attention.norm.weight.dataSync()).every((v) => v === 1)).toBe(true);
    const paper = initSpatialEmbed(128, { variant: 'paper', seed: 1 });
    expect(paper.fuse.norm).toBeUndefined();
    expect(paper.fuse.global.map((l) => l.weight.shape)).toEqual([[64, 128]]);
    expect(Object.keys(spatialEmbedToStateDict(paper)).filter((k) => k.includes('ffn'))).toEqual([
      'model.spatial_embed.ffn_crop.0.weight', 'model.spatial_embed.ffn_crop.0.bias',
      'model.spatial_embed.ffn_stride.0.weight', 'model.spatial_embed.ffn_stride.0.bias',
    ]);
    for (const w of [a, b, paper]) tf.dispose(Object.values(spatialEmbedToStateDict(w)));
    expect(() => initSpatialEmbed(30, { heads: 8 })).toThrow(/initSpatialEmbed: heads must be a positive integer dividing channels 30, got 8/);
    expect(() => initSpatialEmbed(31)).toThrow(/initSpatialEmbed: channels must be a positive even integer, got 31/);
  });

  it('spatialEmbedFromStateDict names missing, unexpected and mis-shaped tensors in one error', () => {
    const dict = spatialEmbedToStateDict(initSpatialEmbed(32, { heads: 4, seed: 2 }));
    const broken: Record<string, tf.Tensor> = { ...dict };
    delete broken['model.spatial_embed.attention.ln.bias'];
    broken['model.spatial_embed.attention.linears.4.weight'] = dict['model.spatial_embed.ln_fuse.weight']!;
    broken['model.spatial_embed.attention.linears.2.weight'] = dict['model.spatial_embed.ffn_crop.0.weight']!;
    const err = (() => {
      try {
        spatialEmbedFromStateDict(broken, { heads: 4 });
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    expect(err).toMatch(/^spatialEmbedFromStateDict: state dict \(prefix 'model\.spatial_embed\.'\) does not match SpatialEmbed/);
    expect(err).toContain('missing: model.spatial_embed.attention.ln.bias');
    expect(err).toContain('unexpected: model.spatial_embed.attention.linears.4.weight');
    expect(err).toContain('model.spatial_embed.attention.linears.2.weight must have shape [32,32], got [2,32]');
    expect(() => spatialEmbedFromStateDict(dict, { heads: 5 })).toThrow(/heads 5 must be a positive integer dividing the channel count 32/);
    expect(() => spatialEmbedFromStateDict({ 'x.weight': dict['model.spatial_embed.ln_fuse.weight']! })).toThrow(/spatialEmbedFromStateDict: no 'attention.linears.0.weight' under any of the prefixes/);
    tf.dispose(Object.values(dict));
  });
});
