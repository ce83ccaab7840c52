/** LLaMA (transformers' `LlamaForCausalLM`): config, rotary embeddings, weights, layers, the model and its loader. */
export { llamaConfigFromJson, type LlamaConfig, type LlamaRopeScaling } from './config.js';
export { llamaRopeInvFreq } from './rope.js';
export { llamaTensorNames } from './weights.js';
export type { KVCache, Llama, LlamaForwardInput, LlamaWeightBytes } from './model.js';
export { llamaFromTensors, loadLlama, type LlamaFromTensorsOptions, type LoadLlamaOptions } from './load.js';
