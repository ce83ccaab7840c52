/**
 * INF-LLaVA end to end: image + question → answer. The visual tokens (vision.ts) replace the
 * `-200` slot of the official prompt's embeddings (prompt.ts), LLaMA prefills from those
 * embeddings and decodes with its KV cache, sampling greedily or with temperature / top-p.
 */
import { concat, tidy, type Tensor3D } from '@tensorflow/tfjs-core';
import { decodeImage } from '../image/decode.js';
import { readConfigJson } from '../models/config.js';
import { loadLlama, type KVCache, type Llama } from '../models/llama.js';
import { IMAGE_TOKEN_INDEX, promptIds, stopIds } from './prompt.js';
import { sampleNext, seededRng } from './sampling.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';
import { loadInfLlavaVision, type EncodeOptions, type InfLlavaVision } from './vision.js';

export interface GenerateOptions {
  /** `[H, W, 3]` RGB 0..255, or encoded JPEG / PNG / WebP bytes. */
  image: Tensor3D | Uint8Array;
  question: string;
  /** Default 256. */
  maxNewTokens?: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Nucleus sampling mass (default 1 = off). */
  topP?: number;
  /** Seed of the sampler's generator (default 0), so runs repeat. */
  seed?: number;
  /** Receives the answer's new text as each token arrives. */
  onToken?: (text: string) => void;
  /** Progress of the image encoding (CLIP chunks). */
  onProgress?: EncodeOptions['onProgress'];
}

export interface GenerateResult {
  /** The answer, special tokens omitted. */
  text: string;
  /** New token ids, including the stop token when one was generated (as transformers' generate). */
  tokens: number[];
  /** Milliseconds per stage: decode_image, encode_image, prefill, decode (all tokens), total. */
  timings: Record<string, number>;
}

export interface InfLlava {
  vision: InfLlavaVision;
  llm: Llama;
  tokenizer: Tokenizer;
  /** The official prompt's ids for `question`, `-200` marking the image slot. */
  promptIds(question: string): number[];
  generate(opts: GenerateOptions): Promise<GenerateResult>;
  dispose(): void;
}

/**
 * Loads an INF-LLaVA checkpoint directory (LLaVA format): the vision side (only its tensors),
 * the LLaMA language model (bf16 kept resident and decoded per layer when the checkpoint is
 * bf16) and the tokenizer (`tokenizer.json` in `dir` or `tokenizerDir`).
 */
export async function loadInfLlava(dir: string, opts: { visionDir?: string; tokenizerDir?: string; grid?: number } = {}): Promise<InfLlava> {
  const tokenizer = await loadTokenizer(opts.tokenizerDir ?? dir);
  const vision = await loadInfLlavaVision(dir, { visionDir: opts.visionDir, grid: opts.grid });
  let llm: Llama;
  try {
    llm = await loadLlama(dir);
  } catch (e) {
    vision.dispose();
    throw e;
  }
  const config = (await readConfigJson(dir, 'loadInfLlava')) as { eos_token_id?: number | number[] };
  const stops = new Set(stopIds(tokenizer, config));
  if (vision.config.hiddenSize !== llm.config.hiddenSize) {
    throw new Error(`loadInfLlava: the projector outputs ${vision.config.hiddenSize} channels but the language model's hidden size is ${llm.config.hiddenSize}`);
  }

  const model: InfLlava = {
    vision,
    llm,
    tokenizer,
    promptIds: (question) => promptIds(tokenizer, question),
    async generate(g: GenerateOptions): Promise<GenerateResult> {
      const timings: Record<string, number> = {};
      const clock = (name: string, t0: number) => (timings[name] = performance.now() - t0);
      const start = performance.now();
      let t0 = performance.now();
      const image = g.image instanceof Uint8Array ? await decodeImage(g.image) : g.image;
      clock('decode_image', t0);
      t0 = performance.now();
      let visual: Tensor3D;
      try {
        visual = await vision.encode(image, { onProgress: g.onProgress }); // [1, tokens, hidden]
      } finally {
        if (image !== g.image) image.dispose();
      }
      await visual.data();
      clock('encode_image', t0);

      const ids = promptIds(tokenizer, g.question);
      const slot = ids.indexOf(IMAGE_TOKEN_INDEX);
      const embeds = tidy(() => {
        const parts: Tensor3D[] = [];
        if (slot > 0) parts.push(llm.embed([ids.slice(0, slot)]));
        parts.push(visual);
        if (slot + 1 < ids.length) parts.push(llm.embed([ids.slice(slot + 1)]));
        return concat(parts, 1) as Tensor3D; // [1, prompt + visual tokens, hidden]
      });
      visual.dispose();

      const rng = seededRng(g.seed ?? 0);
      const pick = async (logits: Tensor3D): Promise<number> => {
        const last = (await logits.data()) as Float32Array;
        logits.dispose();
        return sampleNext(last, { temperature: g.temperature ?? 0, topP: g.topP ?? 1, rng });
      };
      const tokens: number[] = [];
      let text = '';
      const emit = () => {
        const now = tokenizer.decode(tokens, { skipSpecialTokens: true });
        if (now.length > text.length && !now.endsWith('\uFFFD')) {
          g.onToken?.(now.slice(text.length));
          text = now;
        }
      };
      t0 = performance.now();
      let cache: KVCache | undefined;
      try {
        const first = llm.forward({ inputsEmbeds: embeds, logitsToKeep: 1 });
        cache = first.cache;
        let next = await pick(first.logits);
        clock('prefill', t0);
        t0 = performance.now();
        const max = g.maxNewTokens ?? 256;
        while (true) {
          tokens.push(next);
          if (stops.has(next)) break;
          emit();
          if (tokens.length >= max) break;
          const step: { logits: Tensor3D; cache: KVCache } = llm.forward({ inputIds: [[next]], cache, logitsToKeep: 1 });
          cache = step.cache;
          next = await pick(step.logits);
        }
        clock('decode', t0);
      } finally {
        embeds.dispose();
        cache?.dispose();
      }
      text = tokenizer.decode(tokens, { skipSpecialTokens: true });
      timings.tokens_per_second = tokens.length / ((timings.decode ?? 0) / 1000 || Infinity);
      clock('total', start);
      return { text, tokens, timings };
    },
    dispose() {
      vision.dispose();
      llm.dispose();
    },
  };
  return model;
}

