/** The `llama8b` group's Markdown: its section (method), its table, and issue 13's targets met or missed. */
import type { PackedWeightFormat } from '../../src/index.js';
import { fixed, gb, mdTable, sig } from '../report.js';
import type { LlamaRow, LlamaSetup } from './llama.js';
import { describeLlama, llamaPrefillFlops } from './llama-weights.js';

/** Bytes as GB (MB below 0.1 GB: the --quick model). */

export function llamaTable(rows: LlamaRow[], prefill: number): string {
  const columns = ['model', 'format', 'weights on GPU:', 'GPU allocated:', 'make s:', 'load s:', `prefill ${prefill} ms:`, 'prefill TFLOP/s:', 'decode ms/token:', 'tok/s:', 'weight GB/s:', 'check'];
  return mdTable(
    columns,
    rows.map((r) => [
      r.model,
      r.format,
      gb(r.gpu_weight_bytes),
      gb(r.gpu_peak_bytes),
      fixed(r.gen_s, 1),
      fixed(r.load_s, 1),
      fixed(r.prefill_ms, 1),
      sig(r.prefill_tflops),
      fixed(r.decode_ms_per_token, 2),
      fixed(r.decode_tok_s, 1),
      sig(r.decode_gbps),
      [r.logits_finite == null ? null : r.logits_finite ? 'logits finite' : 'logits NOT FINITE', r.ids == null ? null : `${r.ids} ids (${r.distinct_ids} distinct)`, r.note].filter(Boolean).join('; ') || '—',
    ]),
  );
}

/** Issue 13's H200 targets against the rows (ours; PyTorch beside). */
export function llamaTargets(rows: LlamaRow[], s: Pick<LlamaSetup, 'prefill' | 'quick'>): string[] {
  const ours = (f: PackedWeightFormat) => rows.find((r) => r.format === f && r.model.startsWith('inf-llava'));
  const tr = rows.filter((r) => r.format === 'bf16 (torch)' && r.decode_tok_s != null);
  const short = (r: LlamaRow) => (r.model.includes('transformers') ? 'PyTorch HF' : 'PyTorch own');
  const torchSays = (what: (r: LlamaRow) => string | null) => {
    const said = tr.map((r) => [r, what(r)] as const).filter(([, w]) => w != null);
    return said.length ? ` (${said.map(([r, w]) => `${short(r)}: ${w}`).join('; ')})` : '';
  };
  const verdict = (v: number | null | undefined, ok: (v: number) => boolean, unit: string, digits = 1) => (v == null ? 'not measured' : `${v.toFixed(digits)} ${unit}: ${ok(v) ? 'met' : 'missed'}`);
  const memory = (v: number | null | undefined, limitGB: number) => (v == null ? 'not measured' : `${gb(v)} allocated: ${v / 1e9 <= limitGB ? 'met' : 'missed'}`);
  const b = ours('bf16');
  const q4 = ours('q4');
  return [
    `Issue 13's targets (H200)${s.quick ? ' — --quick: a tiny model on this adapter, the verdicts mean nothing' : ''}:`,
    '',
    `- decode bf16 ≥ 100 tok/s: ${verdict(b?.decode_tok_s, (v) => v >= 100, 'tok/s')}${torchSays((r) => `${fixed(r.decode_tok_s, 1)} tok/s`)}`,
    `- decode q4 ≥ 200 tok/s: ${verdict(q4?.decode_tok_s, (v) => v >= 200, 'tok/s')}`,
    `- prefill ${s.prefill} tokens ≤ 60 ms bf16: ${verdict(b?.prefill_ms, (v) => v <= 60, 'ms')}${torchSays((r) => `${fixed(r.prefill_ms, 1)} ms`)}`,
    `- GPU memory ≤ 17 GB bf16: ${memory(b?.gpu_peak_bytes, 17)} (weights ${gb(b?.gpu_weight_bytes)})${torchSays((r) => (r.gpu_peak_bytes == null ? null : `${gb(r.gpu_peak_bytes)} peak`))}`,
    `- GPU memory ≤ 6 GB q4: ${memory(q4?.gpu_peak_bytes, 6)} (weights ${gb(q4?.gpu_weight_bytes)})`,
  ];
}

/** The Markdown section: what was built and how it was timed, the table, the targets. `rows`: ours then PyTorch's. */
export function llamaSection(s: LlamaSetup, rows: LlamaRow[]): string {
  const c = s.config;
  return [
    `## ${s.label} synthetic, the whole model on the device (\`llama8b\`)`,
    '',
    `${describeLlama(c)}; random weights made in JS without a file (slices of seeded pools: bf16 uniform ±0.02, q8 random int8 with scales ≈ 0.02/127, q4 random nibbles with scales ≈ 0.04/15 and mins ≈ −0.02; norms ones; the embedding bf16 in every format) into a \`LazyWeights\` store, then \`llamaFromTensors\` uploads the matrices as packed int32 tensors. ` +
      `Prefill: ${s.prefill} tokens, \`logitsToKeep\` 1, logits read back; the median of ${Math.min(s.reps, 3)} after one warm-up (TFLOP/s on ${(llamaPrefillFlops(c, s.prefill) / 1e12).toFixed(3)} TFLOP counted from the shapes: 2·T per layer weight, causal attention, one lm_head row). ` +
      `Decode: ${s.decode} greedy steps after 2 untimed ones, KV cache preallocated for ${s.prefill + 64} positions, argmax on the device and one id read back per step; weight GB/s = the bytes of the decoder matrices and lm_head (scales and mins included) per token / time. ` +
      `Weights on GPU: \`tf.memory().numBytes\` added by the build (PyTorch: \`memory_allocated\` after building, its KV cache included); GPU allocated: the webgpu buffer manager's bytes after the decode (weights, KV cache, pooled activations; PyTorch: \`max_memory_allocated\`). ` +
      `PyTorch: bf16 on the same card — its own LLaMA (fused qkv and gate/up, RMSNorm in fp32, RoPE, SDPA with GQA, a static preallocated KV cache), and transformers' \`LlamaForCausalLM\` (random init, sdpa, its default DynamicCache) where importable; the same prompt, prefill and greedy loop with one \`.item()\` per step.`,
    '',
    llamaTable(rows, s.prefill),
    '',
    ...llamaTargets(rows, s),
  ].join('\n');
}
