// Contact sheet for INF-LLaVA's Dual-perspective Cropping Module (DCM).
//
// Loads the bundled photo, pads it to a square with the CLIP mean colour, resizes it to the
// 1008×1008 high-resolution input, cuts it with `localCrop(x, 3)` and `globalStrideCrop(x, 3)`
// (each → [9, 336, 336, 3]) and draws both sets of nine sub-images on one PNG.
//
//   npm run build && node examples/contact-sheet.mjs [out.png]
//
// Default output: examples/out/contact-sheet.png (gitignored). Runs offline. Uses
// @tensorflow/tfjs-node when its native binding loads, else the pure-JS cpu backend; set
// CONTACT_SHEET_BACKEND=cpu to skip tfjs-node. The PNG does not depend on the backend: both
// crops are exact gathers of the same integer-valued float32 pixels.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { localCrop, globalStrideCrop } from 'inf-llava';

const t0 = performance.now();
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const SRC = path.join(here, 'assets', 'extreme_ironing.jpg');
const arg = process.argv[2];
if (arg?.startsWith('-')) {
  console.log('usage: node examples/contact-sheet.mjs [out.png]   (default: examples/out/contact-sheet.png)');
  process.exit(arg === '-h' || arg === '--help' ? 0 : 1);
}
const OUT = path.resolve(arg ?? path.join(here, 'out', 'contact-sheet.png'));

const SIZE = 1008; // INF-LLaVA's high-resolution input: 3 × 336 (CLIP ViT-L/14-336)
const N = 3; // 3×3 grid → 9 sub-images of 336×336
const TILE = SIZE / N; // 336
const CLIP_MEAN_RGB = { r: 122, g: 116, b: 104 }; // round(255 × [0.48145466, 0.4578275, 0.40821073])

// ---------------------------------------------------------------------------------------------
// 1. Backend: tfjs-node if its binding loads, otherwise cpu.
// ---------------------------------------------------------------------------------------------
async function pickBackend() {
  if (process.env.CONTACT_SHEET_BACKEND !== 'cpu') {
    // Quiet libtensorflow's start-up banners. oneDNN only changes float arithmetic, never the
    // pure index gathers used here.
    process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
    process.env.TF_ENABLE_ONEDNN_OPTS ??= '0';
    try {
      await import('@tensorflow/tfjs-node'); // registers the 'tensorflow' backend
      if (await tf.setBackend('tensorflow')) return 'tensorflow (@tensorflow/tfjs-node)';
    } catch (e) {
      console.log(`tfjs-node unavailable (${String(e?.message ?? e).split('\n')[0]}); using cpu`);
    }
  }
  if (!(await tf.setBackend('cpu'))) throw new Error('could not initialise the cpu backend');
  return 'cpu (@tensorflow/tfjs-backend-cpu)';
}
const backend = await pickBackend();
await tf.ready();

// ---------------------------------------------------------------------------------------------
// 2. Image → [1, 1008, 1008, 3] float32 (values 0..255; normalisation does not affect cropping).
// ---------------------------------------------------------------------------------------------
const { data: rgb, info: src } = await sharp(SRC)
  .toColourspace('srgb')
  .removeAlpha()
  .raw()
  .toBuffer({ resolveWithObject: true });

// Pad to a centred square first (LLaVA's expand2square: offset = floor((side - short)/2)). This
// is a separate sharp pass because within one pipeline sharp always resizes before it extends.
const side = Math.max(src.width, src.height);
const padLeft = Math.floor((side - src.width) / 2);
const padTop = Math.floor((side - src.height) / 2);
const square = await sharp(rgb, { raw: { width: src.width, height: src.height, channels: 3 } })
  .extend({
    top: padTop,
    bottom: side - src.height - padTop,
    left: padLeft,
    right: side - src.width - padLeft,
    background: CLIP_MEAN_RGB,
  })
  .raw()
  .toBuffer();

// Resize with kernel 'cubic' (sharp's Catmull-Rom cubic, the closest sharp has to PIL's
// BICUBIC, which the CLIP image processor uses) rather than sharp's default lanczos3.
const input = await sharp(square, { raw: { width: side, height: side, channels: 3 } })
  .resize(SIZE, SIZE, { kernel: 'cubic' })
  .raw()
  .toBuffer();
if (input.length !== SIZE * SIZE * 3) throw new Error(`unexpected resize output: ${input.length} bytes`);

const x = tf.tensor4d(Float32Array.from(input), [1, SIZE, SIZE, 3], 'float32');

// ---------------------------------------------------------------------------------------------
// 3. The two perspectives.
// ---------------------------------------------------------------------------------------------
const tc = performance.now();
const local = localCrop(x, N);
const global = globalStrideCrop(x, N);
const [localData, globalData] = await Promise.all([local.data(), global.data()]);
const cropMs = performance.now() - tc;
const localShape = local.shape;
const globalShape = global.shape;
tf.dispose([x, local, global]);
const leaked = tf.memory().numTensors;

for (const [name, shape] of [['localCrop', localShape], ['globalStrideCrop', globalShape]]) {
  if (JSON.stringify(shape) !== JSON.stringify([N * N, TILE, TILE, 3])) {
    throw new Error(`${name}(x, ${N}) returned shape ${JSON.stringify(shape)}`);
  }
}

// Check every pixel against the index formulas (documented in src/dcm/*.ts):
//   local  k = r*3+c: tile[u, v] = x[r*336 + u, c*336 + v]
//   global k = i*3+j: tile[u, v] = x[i + 3u, j + 3v]
function verify(name, data, at) {
  for (let k = 0; k < N * N; k++) {
    const a = Math.floor(k / N);
    const b = k % N;
    for (let u = 0; u < TILE; u++) {
      for (let v = 0; v < TILE; v++) {
        const [yy, xx] = at(a, b, u, v);
        const s = (yy * SIZE + xx) * 3;
        const d = ((k * TILE + u) * TILE + v) * 3;
        for (let ch = 0; ch < 3; ch++) {
          if (data[d + ch] !== input[s + ch]) {
            throw new Error(`${name}: tile ${k} pixel (${u},${v}) ch ${ch} = ${data[d + ch]}, expected ${input[s + ch]}`);
          }
        }
      }
    }
  }
}
verify('localCrop', localData, (r, c, u, v) => [r * TILE + u, c * TILE + v]);
verify('globalStrideCrop', globalData, (i, j, u, v) => [i + N * u, j + N * v]);

// ---------------------------------------------------------------------------------------------
// 4. Contact sheet.
// ---------------------------------------------------------------------------------------------
const SHOW = 224; // display size per tile (336 → 224, sharp's default lanczos3; sheet ≈ 1.5k px wide)
const GAP = 8; // between tiles
const LABEL_H = 22; // label strip under each tile
const M = 28; // outer margin
const PANEL_GAP = 44; // between the two panels
const HEAD_H = 56; // panel header (title + formula line)
const TITLE_H = 84; // sheet title + two subtitle lines
const CAPTION_H = 84;

const cellH = SHOW + LABEL_H;
const panelW = N * SHOW + (N - 1) * GAP;
const panelH = HEAD_H + N * cellH + (N - 1) * GAP;
const W = 2 * M + 2 * panelW + PANEL_GAP;
const H = M + TITLE_H + panelH + CAPTION_H + M - 12;
const panelTop = M + TITLE_H;
const panels = [
  {
    left: M,
    data: localData,
    title: `Local perspective (localCrop, contiguous ${TILE}×${TILE} tiles)`,
    formula: `tile (r,c) = x[r·${TILE} : (r+1)·${TILE},  c·${TILE} : (c+1)·${TILE}]`,
    label: (a, b) => `local (${a},${b})`,
    colour: '#1f5f99',
  },
  {
    left: M + panelW + PANEL_GAP,
    data: globalData,
    title: `Global perspective (globalStrideCrop, stride-${N} dilated views)`,
    formula: `tile (i,j) = x[i :: ${N},  j :: ${N}],  i.e. pixel (u,v) = x[i + ${N}u,  j + ${N}v]`,
    label: (a, b) => `global (${a},${b})`,
    colour: '#9a3d12',
  },
];

const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const FONT = `font-family="DejaVu Sans, sans-serif"`;
const text = (px, py, s, size, extra = '') =>
  `<text x="${px}" y="${py}" ${FONT} font-size="${size}" ${extra}>${esc(s)}</text>`;

const composites = [];
const svg = [];
svg.push(text(M, M + 22, `INF-LLaVA Dual-perspective Cropping Module: one ${SIZE}×${SIZE} image, ${N}×${N} grid`, 24, 'font-weight="bold" fill="#111"'));
const subtitle = [
  `Input: assets/extreme_ironing.jpg (${src.width}×${src.height}), padded to ${side}×${side} with the CLIP mean colour ` +
    `RGB(${CLIP_MEAN_RGB.r},${CLIP_MEAN_RGB.g},${CLIP_MEAN_RGB.b}), resized to ${SIZE}×${SIZE} (cubic).`,
  `Each perspective cuts it into ${N * N} sub-images of ${TILE}×${TILE} (tensor [${N * N}, ${TILE}, ${TILE}, 3]); ` +
    `tiles are shown downscaled to ${SHOW}×${SHOW}.`,
];
subtitle.forEach((line, n) => svg.push(text(M, M + 48 + n * 20, line, 14, 'fill="#444"')));

for (const p of panels) {
  svg.push(`<rect x="${p.left}" y="${panelTop}" width="${panelW}" height="4" fill="${p.colour}"/>`);
  svg.push(text(p.left, panelTop + 26, p.title, 17, `font-weight="bold" fill="${p.colour}"`));
  svg.push(text(p.left, panelTop + 46, p.formula, 13, 'fill="#333"'));
  for (let k = 0; k < N * N; k++) {
    const a = Math.floor(k / N);
    const b = k % N;
    const left = p.left + b * (SHOW + GAP);
    const top = panelTop + HEAD_H + a * (cellH + GAP);
    const pixels = Uint8ClampedArray.from(p.data.subarray(k * TILE * TILE * 3, (k + 1) * TILE * TILE * 3));
    const tile = await sharp(Buffer.from(pixels.buffer), { raw: { width: TILE, height: TILE, channels: 3 } })
      .resize(SHOW, SHOW)
      .raw()
      .toBuffer();
    composites.push({ input: tile, raw: { width: SHOW, height: SHOW, channels: 3 }, left, top });
    svg.push(`<rect x="${left}" y="${top + SHOW}" width="${SHOW}" height="${LABEL_H}" fill="#eeeae4"/>`);
    svg.push(text(left + 6, top + SHOW + 16, p.label(a, b), 13, `font-weight="bold" fill="${p.colour}"`));
    svg.push(text(left + SHOW - 6, top + SHOW + 16, `k = ${a}*${N}+${b} = ${k}`, 12, 'text-anchor="end" fill="#333"'));
  }
}

const capTop = panelTop + panelH + 30;
const caption = [
  `Local tiles each see one ninth of the scene at full resolution: tile (r,c) is the contiguous block in row r, column c of the ${N}×${N} grid.`,
  `Global tiles each see the whole scene at 1/${N} resolution, offset by one pixel from each other: tile (i,j) takes every ${N}rd pixel starting at (i,j),`,
  `so the nine look nearly identical. Every pixel of all 18 tiles was checked against these index formulas.`,
];
caption.forEach((line, n) => svg.push(text(M, capTop + n * 22, line, 14, 'fill="#222"')));

const overlay = Buffer.from(
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${svg.join('\n')}</svg>`,
);
composites.push({ input: overlay, left: 0, top: 0 });

await mkdir(path.dirname(OUT), { recursive: true });
const written = await sharp({ create: { width: W, height: H, channels: 3, background: '#ffffff' } })
  .composite(composites)
  .png({ compressionLevel: 9 })
  .toFile(OUT);

const relOut = path.relative(process.cwd(), OUT);
const rel = !relOut || relOut.startsWith('..') || path.isAbsolute(relOut) ? OUT : relOut;
console.log(`backend:          ${backend}`);
console.log(`input:            ${path.relative(root, SRC)} ${src.width}×${src.height} → ${side}×${side} → [1, ${SIZE}, ${SIZE}, 3] float32`);
console.log(`localCrop:        [${localShape.join(', ')}]`);
console.log(`globalStrideCrop: [${globalShape.join(', ')}]`);
console.log(`checked:          every pixel of both crops against the index formulas`);
console.log(`tensors left:     ${leaked}`);
console.log(`crops + readback: ${cropMs.toFixed(0)} ms; total ${(performance.now() - t0).toFixed(0)} ms`);
console.log(`wrote ${rel} (${written.width}×${written.height} PNG, ${(written.size / 1024).toFixed(0)} KiB)`);
