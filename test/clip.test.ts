// CLIP vision tower parity with transformers' CLIPVisionModel (golden fixtures from
// scripts/golden/generate_clip_fixtures.py), on every backend: hidden_states[-1], [-2], [0]
// (and every other index), CLS kept or dropped, quick_gelu and gelu; loading a CLIPVisionModel
// directory (transformers 5 layout: no prefix), a full CLIPModel (`vision_model.`), a
// transformers 4.x CLIPVisionModel and a sharded LLaVA-style checkpoint
// (`model.vision_tower.vision_tower.vision_model.`, written to a temp dir); errors that name
// the key; chunking, progress, and tensor accounting.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadSafetensors } from '../src/io/loadSafetensors.js';
import { parseSafetensorsHeader, readSafetensors, readSafetensorsHeaderLength } from '../src/io/safetensors.js';
import { clipVisionFromTensors, loadClipVision, type ClipVision, type ClipVisionConfig } from '../src/models/clip.js';
import { expectCloseScaled, maxRelErr } from './oracle.js';
import { describeEachBackend, expectThrowsClean, type BackendName } from './backends.js';

const FIX = 'test/fixtures/clip';
const VISION_DIR = `${FIX}/tiny-clip-vision`;
const FULL_DIR = `${FIX}/tiny-clip-full`;
const LAYERS = 3;
const TINY: ClipVisionConfig = {
  hiddenSize: 32,
  intermediateSize: 64,
  numHiddenLayers: 3,
  numAttentionHeads: 4,
  imageSize: 28,
  patchSize: 14,
  numChannels: 3,
  layerNormEps: 1e-5,
  hiddenAct: 'quick_gelu',
};

// ---------------------------------------------------------------------------------------
// Temp checkpoints made from the fixture's bytes (renamed, resharded): no tfjs needed.

/** The fixture's tensors as raw entries: name → {dtype, shape, bytes}. */
function rawEntries(file: string): Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }> {
  const buf = new Uint8Array(readFileSync(file));
  const n = readSafetensorsHeaderLength(buf.subarray(0, 8), buf.length);
  const header = parseSafetensorsHeader(buf.subarray(8, 8 + n), buf.length);
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
  for (const e of header.entries) out.set(e.name, { dtype: e.dtype, shape: e.shape, bytes: buf.subarray(header.dataOffset + e.begin, header.dataOffset + e.end) });
  return out;
}

function writeSafetensors(file: string, entries: Array<[string, { dtype: string; shape: number[]; bytes: Uint8Array }]>): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, e] of entries) {
    header[name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.length] };
    offset += e.bytes.length;
  }
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  let at = 8 + h.length;
  for (const [, e] of entries) {
    out.set(e.bytes, at);
    at += e.bytes.length;
  }
  writeFileSync(file, out);
}

const tmp = mkdtempSync(join(tmpdir(), 'inf-llava-clip-'));
const LLAVA_PREFIX = 'model.vision_tower.vision_tower.vision_model.';
const LLAVA_DIR = join(tmp, 'llava-sharded');
const V4_DIR = join(tmp, 'clip-vision-4x');
{
  const vision = [...rawEntries(`${VISION_DIR}/model.safetensors`)];
  // A transformers 4.x CLIPVisionModel: the same tensors under `vision_model.`.
  mkdirSync(V4_DIR);
  writeSafetensors(join(V4_DIR, 'model.safetensors'), vision.map(([k, e]) => [`vision_model.${k}`, e]));
  writeFileSync(join(V4_DIR, 'config.json'), readFileSync(`${VISION_DIR}/config.json`));
  // An INF-LLaVA-style sharded checkpoint: the tower under LLaVA's prefix, split over two
  // shards beside tensors of other modules; its config names the tower (mm_vision_tower).
  mkdirSync(LLAVA_DIR);
  const f32 = (n: number) => ({ dtype: 'F32', shape: [n], bytes: new Uint8Array(4 * n) });
  const renamed = vision.map(([k, e]): [string, (typeof vision)[number][1]] => [LLAVA_PREFIX + k, e]);
  const half = Math.floor(renamed.length / 2);
  const shards: Array<Array<[string, (typeof vision)[number][1]]>> = [
    [['model.embed_tokens.weight', f32(8)], ...renamed.slice(0, half)],
    [...renamed.slice(half), ['model.mm_projector.0.weight', f32(4)], ['lm_head.weight', f32(8)]],
  ];
  const weightMap: Record<string, string> = {};
  shards.forEach((entries, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(LLAVA_DIR, file), entries);
    for (const [name] of entries) weightMap[name] = file;
  });
  writeFileSync(join(LLAVA_DIR, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  writeFileSync(join(LLAVA_DIR, 'config.json'), JSON.stringify({ model_type: 'llava_llama', mm_vision_tower: 'openai/clip-vit-large-patch14-336', mm_hidden_size: 32 }));
}
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------

const worst = new Map<string, number>();

type Bound = { rtol: number; atol: number };
/**
 * Against transformers, element by element: |a − ref| ≤ atol·max|ref| + rtol·|ref|. Measured
 * worst atol at rtol 1e-6, in units of max|ref|, over the four backends: 3.5e-7 (webgpu); the
 * max|err|/max|ref| of each backend is recorded for the report.
 */
const TOL: Bound = { rtol: 1e-6, atol: 2e-6 };
/** Chunked vs whole batches: equal up to a backend's blocking (measured: 0, tensorflow 2.0e-7). */
const CHUNKS: Bound = { rtol: 0, atol: 1e-6 };
async function expectParity(actual: tf.Tensor, ref: tf.Tensor, tol: Bound, what: string, backend: string): Promise<number> {
  expect(actual.shape, `${what}: shape`).toEqual(ref.shape);
  const [a, r] = [await actual.data(), await ref.data()];
  const rel = maxRelErr(a, r, what, 0);
  worst.set(backend, Math.max(worst.get(backend) ?? 0, rel));
  expectCloseScaled(a, r, tol.rtol, tol.atol, what);
  return rel;
}

await describeEachBackend('CLIP vision tower vs transformers', (backend: BackendName) => {
  const tol = TOL;
  let model: ClipVision;
  let expected: Record<string, tf.Tensor>;
  let pixels: tf.Tensor4D;
  /** hidden_states[i] of the fixture (`prefix` '' or 'gelu.'), optionally without CLS. */
  const ref = (i: number, dropCls: boolean, prefix = ''): tf.Tensor => {
    const t = expected[`${prefix}hidden_states.${i < 0 ? LAYERS + 1 + i : i}`]!;
    return dropCls ? t.slice([0, 1, 0], [-1, -1, -1]) : t.clone();
  };

  beforeAll(async () => {
    model = await loadClipVision(VISION_DIR);
    expected = readSafetensors(new Uint8Array(readFileSync(`${FIX}/expected.safetensors`))).tensors;
    pixels = expected['input.pixels'] as tf.Tensor4D;
  });
  afterAll(() => {
    model.dispose();
    tf.dispose(Object.values(expected));
  });

  it('reads the config and detects the prefix of a transformers 5 CLIPVisionModel (none)', () => {
    expect(model.config).toEqual(TINY);
  });

  for (const layer of [-1, -2, 0, 1, 2, 3, -4]) {
    for (const dropCls of [true, false]) {
      it(`hidden_states[${layer}], dropCls ${dropCls} (element-wise, |err| <= ${tol.atol}·max|ref| + ${tol.rtol}·|ref|)`, async () => {
        const before = tf.memory().numTensors;
        const out = model.features(pixels, { layer, dropCls });
        expect(tf.memory().numTensors - before, 'features() leaves only its output').toBe(1);
        expect(out.shape).toEqual([2, dropCls ? 4 : 5, 32]);
        const r = ref(layer, dropCls);
        await expectParity(out, r, tol, `layer ${layer}`, backend);
        tf.dispose([out, r]);
      });
    }
  }

  it('257 tokens (the per-image / per-head attention layouts on tensorflow / wasm) match transformers', async () => {
    const long = await loadClipVision(`${FIX}/tiny-clip-vision-257`);
    expect(long.config).toEqual({ ...TINY, numHiddenLayers: 2, imageSize: 32, patchSize: 2 });
    const out = long.features(expected['long.input.pixels'] as tf.Tensor4D, { layer: -1, dropCls: false });
    await expectParity(out, expected['long.hidden_states.2']!, tol, '257 tokens', backend);
    out.dispose();
    long.dispose();
  });

  it('defaults to LLaVA features: hidden_states[-2] without CLS', async () => {
    const out = model.features(pixels);
    const r = ref(-2, true);
    await expectParity(out, r, tol, 'default', backend);
    tf.dispose([out, r]);
  });

  it("hidden_act 'gelu' (exact) matches transformers", async () => {
    const { tensors } = await loadSafetensors(VISION_DIR);
    const gelu = clipVisionFromTensors(tensors, { ...TINY, hiddenAct: 'gelu' });
    tf.dispose(Object.values(tensors)); // the model holds its own references
    for (const layer of [-1, -2]) {
      const out = gelu.features(pixels, { layer, dropCls: false });
      const r = ref(layer, false, 'gelu.');
      await expectParity(out, r, tol, `gelu layer ${layer}`, backend);
      tf.dispose([out, r]);
    }
    gelu.dispose();
  });

  it('a full CLIPModel directory (vision_config nested, vision_model. prefix, text tower) gives the same features', async () => {
    const before = tf.memory().numTensors;
    const full = await loadClipVision(FULL_DIR);
    // Only the vision tower's tensors were kept: as many as the vision-only model holds.
    const vision = await loadClipVision(VISION_DIR);
    const perModel = tf.memory().numTensors - before;
    expect(perModel % 2).toBe(0);
    vision.dispose();
    expect(tf.memory().numTensors - before).toBe(perModel / 2);
    expect(full.config).toEqual(TINY);
    const a = full.features(pixels, { layer: -1, dropCls: false });
    const b = model.features(pixels, { layer: -1, dropCls: false });
    expect(Array.from(await a.data())).toEqual(Array.from(await b.data()));
    tf.dispose([a, b]);
    full.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a transformers 4.x CLIPVisionModel (vision_model. prefix) loads', async () => {
    const v4 = await loadClipVision(V4_DIR);
    const out = v4.features(pixels, { layer: -2 });
    const r = ref(-2, true);
    await expectParity(out, r, tol, '4.x layout', backend);
    tf.dispose([out, r]);
    v4.dispose();
  });

  it('a sharded LLaVA-style checkpoint: prefix detected from the index, tower config required', async () => {
    await expect(loadClipVision(LLAVA_DIR)).rejects.toThrow(/mm_vision_tower.*openai\/clip-vit-large-patch14-336/);
    const before = tf.memory().numTensors;
    const llava = await loadClipVision(LLAVA_DIR, { config: TINY });
    const out = llava.features(pixels, { layer: -2 });
    const r = ref(-2, true);
    await expectParity(out, r, tol, 'LLaVA layout', backend);
    tf.dispose([out, r]);
    llava.dispose();
    expect(tf.memory().numTensors).toBe(before);
    // Explicit prefix too.
    const again = await loadClipVision(LLAVA_DIR, { config: TINY, prefix: LLAVA_PREFIX });
    again.dispose();
  });

  it('chunked batches equal the unchunked batch; onProgress reports each chunk', async () => {
    const calls: Array<[number, number]> = [];
    const whole = model.features(pixels, { layer: -2, onProgress: (d, t) => calls.push([d, t]) });
    expect(calls).toEqual([[2, 2]]);
    calls.length = 0;
    const before = tf.memory().numTensors;
    const chunked = model.features(pixels, { layer: -2, batchSize: 1, onProgress: (d, t) => calls.push([d, t]) });
    expect(tf.memory().numTensors - before, 'chunked features() leaves only its output').toBe(1);
    expect(calls).toEqual([
      [1, 2],
      [2, 2],
    ]);
    // Rows of a matMul do not depend on the other rows: equal up to a backend's blocking.
    const rel = await expectParity(chunked, whole, CHUNKS, 'chunked vs whole', `${backend} (chunking)`);
    if (backend === 'cpu') expect(rel).toBe(0);
    // Three images in chunks of two (a short last chunk).
    const three = tf.tidy(() => tf.concat([pixels, pixels.slice([0, 0, 0, 0], [1, -1, -1, -1])]) as tf.Tensor4D);
    calls.length = 0;
    const out3 = model.features(three, { batchSize: 2, onProgress: (d, t) => calls.push([d, t]) });
    expect(calls).toEqual([
      [2, 3],
      [3, 3],
    ]);
    const first = out3.slice([0, 0, 0], [2, -1, -1]);
    const last = out3.slice([2, 0, 0], [1, -1, -1]);
    const firstRef = whole.slice([0, 0, 0], [1, -1, -1]);
    await expectParity(first, whole, CHUNKS, 'chunks of 2', `${backend} (chunking)`);
    await expectParity(last, firstRef, CHUNKS, 'short last chunk', `${backend} (chunking)`);
    tf.dispose([whole, chunked, three, out3, first, last, firstRef]);
  });

  it('features() leaks nothing; dispose() returns to the pre-load tensor count', async () => {
    const beforeLoad = tf.memory().numTensors;
    const m = await loadClipVision(FULL_DIR);
    const loaded = tf.memory().numTensors;
    expect(loaded).toBeGreaterThan(beforeLoad);
    const out = m.features(pixels, { layer: -1, batchSize: 1 });
    expect(tf.memory().numTensors).toBe(loaded + 1);
    out.dispose();
    expect(tf.memory().numTensors).toBe(loaded);
    m.dispose();
    expect(tf.memory().numTensors).toBe(beforeLoad);
    m.dispose(); // idempotent
    expect(() => m.features(pixels)).toThrow(/disposed/);
  });

  it('clipVisionFromTensors leaves the caller its tensors: both sides dispose independently', async () => {
    const { tensors } = await loadSafetensors(VISION_DIR);
    const m = clipVisionFromTensors(tensors, TINY);
    m.dispose();
    const w = tensors['embeddings.class_embedding']!;
    expect(w.isDisposed).toBe(false);
    expect((await w.data()).length).toBe(32);
    const m2 = clipVisionFromTensors(tensors, TINY, { prefix: '' });
    tf.dispose(Object.values(tensors));
    const out = m2.features(pixels, { layer: 0, dropCls: false });
    const r = ref(0, false);
    await expectParity(out, r, tol, 'after the caller disposed its tensors', backend);
    tf.dispose([out, r]);
    m2.dispose();
  });

  it('missing, unexpected and mis-shaped tensors are all named in one error', async () => {
    const { tensors } = await loadSafetensors(VISION_DIR);
    const bad: Record<string, tf.Tensor> = { ...tensors };
    delete bad['encoder.layers.1.self_attn.k_proj.bias'];
    bad['encoder.layers.3.mlp.fc1.weight'] = tensors['encoder.layers.0.mlp.fc1.weight']!;
    bad['encoder.layers.2.mlp.fc2.weight'] = tensors['encoder.layers.0.mlp.fc1.weight']!; // [64, 32], wants [32, 64]
    expectThrowsClean(
      () => clipVisionFromTensors(bad, TINY),
      /missing: encoder\.layers\.1\.self_attn\.k_proj\.bias; unexpected: encoder\.layers\.3\.mlp\.fc1\.weight; encoder\.layers\.2\.mlp\.fc2\.weight must have shape \[32,64\], got \[64,32\]/,
    );
    // The config decides the shapes: a wrong config names the first mismatched tensors.
    expectThrowsClean(() => clipVisionFromTensors(tensors, { ...TINY, imageSize: 42 }), /embeddings\.position_embedding\.weight must have shape \[10,32\], got \[5,32\]/);
    expectThrowsClean(() => clipVisionFromTensors(tensors, { ...TINY, numHiddenLayers: 4 }), /missing: encoder\.layers\.3\.layer_norm1\.weight, /);
    expectThrowsClean(() => clipVisionFromTensors(tensors, { ...TINY, numHiddenLayers: 2 }), /unexpected: encoder\.layers\.2\./);
    expectThrowsClean(() => clipVisionFromTensors(tensors, { ...TINY, numAttentionHeads: 5 }), /numAttentionHeads 5 must divide hiddenSize 32/);
    expectThrowsClean(() => clipVisionFromTensors({}, TINY), /no tensor named '…embeddings\.patch_embedding\.weight'/);
    // With the LLaVA prefix, the error names the full key.
    const prefixed = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [LLAVA_PREFIX + k, t]));
    delete prefixed[`${LLAVA_PREFIX}pre_layrnorm.bias`];
    expectThrowsClean(() => clipVisionFromTensors(prefixed, TINY), /prefix 'model\.vision_tower\.vision_tower\.vision_model\.'.*missing: model\.vision_tower\.vision_tower\.vision_model\.pre_layrnorm\.bias/);
    // post_layernorm is optional.
    const noPost: Record<string, tf.Tensor> = { ...tensors };
    delete noPost['post_layernorm.weight'];
    delete noPost['post_layernorm.bias'];
    clipVisionFromTensors(noPost, TINY).dispose();
    tf.dispose(Object.values(tensors));
  });

  it('loadClipVision on a directory with a wrong shape names the key and frees what it read', async () => {
    const dir = join(tmp, `bad-${backend}`);
    mkdirSync(dir, { recursive: true });
    const entries = [...rawEntries(`${VISION_DIR}/model.safetensors`)].map(([k, e]): [string, typeof e] =>
      k === 'embeddings.class_embedding' ? [k, { ...e, shape: [16], bytes: e.bytes.subarray(0, 64) }] : [k, e],
    );
    writeSafetensors(join(dir, 'model.safetensors'), entries);
    writeFileSync(join(dir, 'config.json'), readFileSync(`${VISION_DIR}/config.json`));
    const before = tf.memory().numTensors;
    await expect(loadClipVision(dir)).rejects.toThrow(/embeddings\.class_embedding must have shape \[32\], got \[16\]/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses bad inputs and options, naming them', () => {
    const small = tf.zeros([1, 14, 14, 3]) as tf.Tensor4D;
    expectThrowsClean(() => model.features(small), /pixels must be \[B, 28, 28, 3\] \(NHWC\), got \[1,14,14,3\]/);
    const ints = tf.zeros([1, 28, 28, 3], 'int32') as tf.Tensor4D;
    expectThrowsClean(() => model.features(ints), /pixels must be float32, got int32/);
    tf.dispose([small, ints]);
    const x = tf.zeros([1, 28, 28, 3]) as tf.Tensor4D;
    expectThrowsClean(() => model.features(x, { layer: 4 }), /layer must be an integer in \[-4, 3\].*got 4/);
    expectThrowsClean(() => model.features(x, { layer: -5 }), /got -5/);
    expectThrowsClean(() => model.features(x, { batchSize: 0 }), /batchSize must be a positive integer/);
    x.dispose();
  });

  // A report, not a test (it could not fail).
  afterAll(() => {
    for (const [b, e] of worst) if (b.startsWith(backend)) console.log(`CLIP worst max|err|/max|ref| on ${b}: ${e.toExponential(2)}`);
  });
});
