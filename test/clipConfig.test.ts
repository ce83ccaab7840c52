// Reading CLIP vision configs from Hugging Face config.json objects (no backend involved).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLIP_VIT_L_14_336, clipVisionConfigFromJson, detectClipVisionPrefix } from '../src/models/clip.js';
import { listCheckpointTensorNames, readConfigJson } from '../src/models/config.js';

const json = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as object;
const TINY = {
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

describe('clipVisionConfigFromJson', () => {
  it('reads a CLIPVisionModel config (top level) and a CLIPModel config (vision_config)', () => {
    expect(clipVisionConfigFromJson(json('test/fixtures/clip/tiny-clip-vision/config.json'))).toEqual(TINY);
    expect(clipVisionConfigFromJson(json('test/fixtures/clip/tiny-clip-full/config.json'))).toEqual(TINY);
  });

  it("openai/clip-vit-large-patch14-336's vision_config (as on the Hub) is ViT-L/14-336", () => {
    const hub = {
      architectures: ['CLIPModel'],
      model_type: 'clip',
      projection_dim: 768,
      text_config: { hidden_size: 768, num_hidden_layers: 12 },
      vision_config: { hidden_size: 1024, image_size: 336, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14, projection_dim: 768, dropout: 0.0 },
    };
    expect(clipVisionConfigFromJson(hub)).toEqual(CLIP_VIT_L_14_336);
  });

  it("missing fields take CLIPVisionConfig's defaults; HF LLaVA's nested vision_config works", () => {
    expect(clipVisionConfigFromJson({})).toEqual({
      hiddenSize: 768,
      intermediateSize: 3072,
      numHiddenLayers: 12,
      numAttentionHeads: 12,
      imageSize: 224,
      patchSize: 32,
      numChannels: 3,
      layerNormEps: 1e-5,
      hiddenAct: 'quick_gelu',
    });
    expect(clipVisionConfigFromJson({ model_type: 'clip', vision_config: null }).hiddenSize).toBe(768);
    const llava = { model_type: 'llava', vision_config: { model_type: 'clip_vision_model', hidden_size: 1024, num_attention_heads: 16, image_size: [336, 336], patch_size: [14, 14], hidden_act: 'gelu' } };
    const c = clipVisionConfigFromJson(llava);
    expect([c.hiddenSize, c.imageSize, c.patchSize, c.hiddenAct]).toEqual([1024, 336, 14, 'gelu']);
  });

  it('refuses configs that do not describe a CLIP vision tower, naming the field', () => {
    expect(() => clipVisionConfigFromJson({ model_type: 'llava_llama', mm_vision_tower: 'openai/clip-vit-large-patch14-336' })).toThrow(
      /names its vision tower \(mm_vision_tower "openai\/clip-vit-large-patch14-336"\)/,
    );
    expect(() => clipVisionConfigFromJson({ model_type: 'llama' })).toThrow(/model_type "llama" is not a CLIP vision config/);
    expect(() => clipVisionConfigFromJson({ hidden_act: 'gelu_new' })).toThrow(/hidden_act "gelu_new" is not supported \(supported: quick_gelu, gelu\)/);
    expect(() => clipVisionConfigFromJson({ hidden_size: '1024' })).toThrow(/"hidden_size" must be an integer >= 1, got "1024"/);
    expect(() => clipVisionConfigFromJson({ vision_config: { image_size: [336, 224] } })).toThrow(/vision_config: "image_size" must be an integer or a square/);
    expect(() => clipVisionConfigFromJson({ hidden_size: 100, num_attention_heads: 16 })).toThrow(/numAttentionHeads 16 must divide hiddenSize 100/);
    expect(() => clipVisionConfigFromJson({ image_size: 300, patch_size: 14 })).toThrow(/patchSize 14 must divide imageSize 300/);
    expect(() => clipVisionConfigFromJson({ layer_norm_eps: 0 })).toThrow(/"layer_norm_eps" must be a finite number > 0/);
    expect(() => clipVisionConfigFromJson([] as unknown as object)).toThrow(/expected a parsed config.json object/);
  });
});

describe('checkpoint directory helpers', () => {
  it('readConfigJson and listCheckpointTensorNames read only the config and the header', async () => {
    expect((await readConfigJson('test/fixtures/clip/tiny-clip-full')).model_type).toBe('clip');
    await expect(readConfigJson('test/fixtures/clip')).rejects.toThrow(/readConfigJson: cannot read .*config\.json/);
    const names = await listCheckpointTensorNames('test/fixtures/clip/tiny-clip-full');
    expect(names).toContain('vision_model.embeddings.patch_embedding.weight');
    expect(names).toContain('text_model.embeddings.token_embedding.weight');
    expect(detectClipVisionPrefix(names)).toBe('vision_model.');
    expect(detectClipVisionPrefix(await listCheckpointTensorNames('test/fixtures/clip/tiny-clip-vision'))).toBe('');
    await expect(listCheckpointTensorNames('test/fixtures/clip')).rejects.toThrow(/holds neither model\.safetensors\.index\.json nor a readable model\.safetensors/);
  });

  it('detectClipVisionPrefix: one tower, or an error asking for the prefix', () => {
    expect(detectClipVisionPrefix(['model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight', 'lm_head.weight'])).toBe(
      'model.vision_tower.vision_tower.vision_model.',
    );
    expect(() => detectClipVisionPrefix(['a.embeddings.patch_embedding.weight', 'b.embeddings.patch_embedding.weight'])).toThrow(/several vision towers \('a\.', 'b\.'\); pass opts\.prefix/);
    expect(() => detectClipVisionPrefix(['xembeddings.patch_embedding.weight'])).toThrow(/no tensor named/);
  });
});
