/**
 * LLaMA-3-8B at its real size, on a synthetic checkpoint (random bf16 weights, real shapes and
 * names): load (lazy bf16 residency), prefill a prompt, generate a few tokens greedily, and
 * report times and memory (peak RSS, and how far the prefill raised it). Not a test: it needs
 * ~16 GB of disk, ~18 GB of RAM and minutes. Any LLaMA checkpoint works with --model, e.g. the
 * long-context fixture: --model test/fixtures/llama/tiny-llama-long --prompt 8000 (issue 9's target).
 *
 *   .venv/bin/python scripts/make-synthetic-llama8b.py /tmp/llama8b-synthetic
 *   npx tsx bench/llama-8b-synthetic.ts [--model /tmp/llama8b-synthetic] [--prompt 600] [--tokens 4] [--backend tensorflow] [--quantize q8|q4]
 *   rm -rf /tmp/llama8b-synthetic
 *
 * Memory: `process.memoryUsage().rss` sampled every 50 ms by a worker thread (the forward pass
 * is synchronous and blocks the main thread), plus the kernel's high-water mark (VmHWM).
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { useBackend, type BackendName } from '../src/backends/node.js';
import { loadLlama, type KVCache } from '../src/models/llama/index.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
// Not --dir: node-pre-gyp (tfjs-node's binding loader) parses process.argv and takes --dir as its own.
const dir = arg('model', '/tmp/llama8b-synthetic');
const promptLen = Number(arg('prompt', '600'));
const newTokens = Number(arg('tokens', '4'));
const backend = arg('backend', 'tensorflow') as BackendName;
const quantize = arg('quantize', '') as '' | 'q8' | 'q4';
if (quantize !== '' && quantize !== 'q8' && quantize !== 'q4') throw new Error(`--quantize must be q8 or q4, got ${JSON.stringify(quantize)}`);

const GB = 1e9;
const fmt = (bytes: number) => `${(bytes / GB).toFixed(2)} GB`;
function vm(key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

// RSS sampler in a worker: rss is process-wide, and the worker runs while forward() blocks.
const sampler = new Worker(
  `const { parentPort } = require('node:worker_threads');
   let peak = 0;
   const tick = () => { peak = Math.max(peak, process.memoryUsage().rss); };
   const timer = setInterval(tick, 50);
   parentPort.on('message', (m) => { tick(); if (m === 'stop') clearInterval(timer); parentPort.postMessage(peak); });`,
  { eval: true },
);
const peakRss = () =>
  new Promise<number>((resolve) => {
    sampler.once('message', resolve);
    sampler.postMessage('peak');
  });

/** A seeded prompt: BOS, then pseudo-random ids (an LCG), like a real prompt's spread over the vocabulary. */
function prompt(n: number, vocab: number, bos: number): number[] {
  const out = [bos];
  let s = 12345;
  while (out.length < n) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    out.push(s % vocab);
  }
  return out;
}

async function main(): Promise<void> {
  await useBackend(backend);
  const baseTensors = tf.memory().numTensors; // useBackend's smoke test leaves its input behind
  console.log(`backend ${tf.getBackend()}, checkpoint ${dir}, prompt ${promptLen} tokens, ${newTokens} new tokens${quantize ? `, quantize ${quantize}` : ''}`);
  console.log(`rss at start ${fmt(process.memoryUsage().rss)}`);

  let t = performance.now();
  const llm = await loadLlama(dir, quantize ? { quantize } : {}); // bf16 → lazy residency ('auto'); quantised at load
  const loadS = (performance.now() - t) / 1000;
  const afterLoad = process.memoryUsage();
  const wb = llm.weightBytes();
  const peakAfterLoad = await peakRss();
  // With node --expose-gc (NODE_OPTIONS=--expose-gc): the RSS once the checkpoint bytes dropped while quantising are collected.
  const gc = (globalThis as { gc?: () => void }).gc;
  let rssAfterGc: number | undefined;
  if (gc) {
    // V8 frees ArrayBuffer memory after a GC, on its own schedule: collect, wait, collect again.
    gc();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    gc();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    rssAfterGc = process.memoryUsage().rss;
    console.log(`rss after a full GC ${fmt(rssAfterGc)} (external ${fmt(process.memoryUsage().external)})`);
  }
  console.log(`load: ${loadS.toFixed(1)} s; rss ${fmt(afterLoad.rss)} (external ${fmt(afterLoad.external)}, arrayBuffers ${fmt(afterLoad.arrayBuffers)}); peak rss while loading ${fmt(peakAfterLoad)}; tensors ${tf.memory().numTensors}`);
  console.log(`weights ${fmt(wb.total)}: linear ${fmt(wb.linear)}${wb.quantized ? ` (${wb.quantized})` : ''}, scales ${fmt(wb.scales)}, embedding ${fmt(wb.embedding)}, norms ${fmt(wb.other)}`);

  const c = llm.config;
  const ids = prompt(promptLen, c.vocabSize, c.bosTokenId ?? 0);
  const rssBeforePrefill = process.memoryUsage().rss;
  t = performance.now();
  let { logits, cache } = llm.forward({ inputIds: [ids], logitsToKeep: 1 });
  const first = tf.argMax(logits, -1);
  let next = (await first.data())[0]!;
  first.dispose();
  const prefillS = (performance.now() - t) / 1000;
  const nonEmbed = c.numHiddenLayers * (2 * c.hiddenSize * (c.numAttentionHeads + c.numKeyValueHeads) * c.headDim + 3 * c.hiddenSize * c.intermediateSize);
  const flops = 2 * promptLen * nonEmbed + 2 * c.vocabSize * c.hiddenSize; // lm_head on the last position only
  const peakAfterPrefill = await peakRss();
  console.log(`prefill ${promptLen} tokens: ${prefillS.toFixed(1)} s (${(flops / prefillS / 1e9).toFixed(0)} GFLOP/s of ${(flops / 1e12).toFixed(2)} TFLOP); first token ${next}; peak rss so far ${fmt(peakAfterPrefill)}, ${((peakAfterPrefill - rssBeforePrefill) / 1e6).toFixed(0)} MB above the rss before the prefill`);

  const tokens = [next];
  const perToken: number[] = [];
  const cpuPerToken: number[] = [];
  for (let i = 1; i < newTokens; i++) {
    logits.dispose();
    t = performance.now();
    const cpu0 = process.cpuUsage();
    ({ logits, cache } = llm.forward({ inputIds: [[next]], cache: cache as KVCache }));
    const am = tf.argMax(logits, -1);
    next = (await am.data())[0]!;
    am.dispose();
    perToken.push((performance.now() - t) / 1000);
    const cpu = process.cpuUsage(cpu0);
    cpuPerToken.push((cpu.user + cpu.system) / 1e6);
    tokens.push(next);
  }
  logits.dispose();
  cache.dispose();
  const rssAfterDecode = process.memoryUsage().rss;
  console.log(`rss after decoding ${fmt(rssAfterDecode)}`);
  const mean = perToken.reduce((a, b) => a + b, 0) / Math.max(1, perToken.length);
  const sorted = [...perToken].sort((a, b) => a - b);
  const median = sorted.length ? sorted[Math.floor(sorted.length / 2)]! : NaN;
  console.log(`decode: ${perToken.map((s) => s.toFixed(2)).join(', ')} s per token (mean ${mean.toFixed(2)} s, median ${median.toFixed(2)} s, cache length ${promptLen + newTokens - 1}); tokens ${tokens.join(' ')}`);
  console.log(`decode CPU time (all threads): ${cpuPerToken.map((s) => s.toFixed(2)).join(', ')} s per token`);
  llm.dispose();
  sampler.postMessage('stop');
  const peak = await new Promise<number>((resolve) => sampler.once('message', resolve));
  await sampler.terminate();
  console.log(`peak rss (sampled) ${fmt(peak)}; VmHWM ${fmt(vm('VmHWM'))}; tensors left ${tf.memory().numTensors - baseTensors}`);
  console.log(
    JSON.stringify({ backend, quantize: quantize || null, weightBytes: wb, peakRssLoad: peakAfterLoad, promptLen, newTokens, loadS, prefillS, rssBeforePrefill, peakRssPrefill: peakAfterPrefill, prefillRssIncrease: peakAfterPrefill - rssBeforePrefill, decodeSPerToken: mean, decodeMedianS: median, perToken, cpuPerToken, rssAfterGc, rssAfterDecode, rssAfterLoad: afterLoad.rss, peakRssSampled: peak, vmHWM: vm('VmHWM') }),
  );
}

await main();
