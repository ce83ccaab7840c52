/** LLaMA: config, RoPE, weights, layers, the model and its loader (being split into this folder). */
export * from '../llama.js';
