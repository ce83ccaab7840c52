/**
 * INF-LLaVA in the browser: pick a photo, see the DCM's 18 sub-images, ask a question and watch
 * the answer stream, click the photo to see where the DEM attends. Plain TypeScript and DOM.
 *
 * In your own app the imports are `from 'inf-llava'`; this example imports the repository's
 * sources so it builds without a published package.
 */
import * as tf from '@tensorflow/tfjs-core';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { loadInfLlava, registerWebGPUBackend, webgpuHasSubgroups, type InfLlava } from '../../src/index.js';
import { drawSubImages } from './dcmView.js';
import { attentionAt, drawHeat, featureMaps, type Probabilities } from './demView.js';

const $ = <T extends HTMLElement = HTMLElement>(testid: string): T => {
  const el = document.querySelector<T>(`[data-testid="${testid}"]`);
  if (!el) throw new Error(`missing [data-testid=${testid}]`);
  return el;
};
const ui = {
  backend: $('backend'),
  model: $('model'),
  status: $('status'),
  error: $('error'),
  imageInput: $<HTMLInputElement>('image-input'),
  question: $<HTMLTextAreaElement>('question'),
  ask: $<HTMLButtonElement>('ask'),
  maxTokens: $<HTMLInputElement>('max-tokens'),
  answer: $<HTMLOutputElement>('answer'),
  timings: $<HTMLTableElement>('timings'),
  demPhoto: $<HTMLCanvasElement>('dem-photo'),
  demGlobal: $<HTMLCanvasElement>('dem-global-query'),
  demLocal: $<HTMLCanvasElement>('dem-local-query'),
  demHead: $<HTMLSelectElement>('dem-head'),
  modelFolder: $<HTMLInputElement>('model-folder'),
  visionFolder: $<HTMLInputElement>('vision-folder'),
  modelUrl: $<HTMLInputElement>('model-url'),
  visionUrl: $<HTMLInputElement>('vision-url'),
};
const drop = document.getElementById('drop')!;

/** The site's own files, relative to the page (served from any path). */
const site = (path: string) => new URL(path, document.baseURI).href;
/**
 * The bundled tiny checkpoint's files. They are fetched whole and handed over as `File`s (what a
 * picked folder gives): 0.55 MB, and it works with any static server, Range support or not, with
 * no request for a file the folder does not have. (The URL field loads with Range requests.)
 */
const BUNDLED = {
  files: ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'],
  base: site('models/tiny-inf-llava/'),
  label: 'bundled tiny random checkpoint',
};
const SAMPLE_PHOTO = site('extreme_ironing.jpg');

type Source = string | File[];

async function bundledFiles(): Promise<File[]> {
  return Promise.all(
    BUNDLED.files.map(async (name) => {
      // no-store: a whole response kept in the HTTP cache (possibly compressed by the server) would
      // be what the browser answers later Range requests for the same URL from.
      const res = await fetch(new URL(name, BUNDLED.base), { cache: 'no-store' });
      if (!res.ok) throw new Error(`${res.url}: HTTP ${res.status}`);
      return new File([await res.blob()], name);
    }),
  );
}
interface Photo {
  rgb: tf.Tensor3D; // [H, W, 3] int32 0..255
  name: string;
  square?: ImageData; // the model's input, as drawn
  maps?: { L: tf.Tensor4D; G: tf.Tensor4D }; // CLIP feature maps for the DEM view (lazy)
}
const state: { model?: InfLlava; photo?: Photo; busy: boolean; timings: Record<string, number>; dem?: { global: Probabilities; local: Probabilities; query: [number, number] } } = {
  busy: false,
  timings: {},
};

// ------------------------------------------------------------------------------------------
// Status, errors, timings

function setStatus(text: string): void {
  ui.status.textContent = text;
}

function fail(e: unknown, where: string): void {
  const msg = e instanceof Error ? e.message : String(e);
  ui.error.hidden = false;
  ui.error.textContent = `${where}: ${msg}`;
  setStatus(`error (${where})`);
  console.error(`${where}:`, e);
}

function timing(stage: string, ms: number): void {
  state.timings[stage] = ms;
  const body = ui.timings.tBodies[0]!;
  body.replaceChildren(
    ...Object.entries(state.timings).map(([k, v]) => {
      const tr = document.createElement('tr');
      tr.dataset.stage = k;
      tr.dataset.value = String(v);
      const th = document.createElement('th');
      th.textContent = k.replace(/_/g, ' ');
      const td = document.createElement('td');
      td.textContent = k === 'tokens_per_second' ? `${v.toFixed(1)} tok/s` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`;
      tr.append(th, td);
      return tr;
    }),
  );
}

/** Runs `work` with the page marked busy (buttons off, body[data-state=busy]); errors are shown. */
async function busy<T>(what: string, work: () => Promise<T>): Promise<T | undefined> {
  state.busy = true;
  ui.error.hidden = true;
  document.body.dataset.state = 'busy';
  setStatus(`${what}…`);
  refreshButtons();
  try {
    const out = await work();
    setStatus('ready');
    return out;
  } catch (e) {
    fail(e, what);
    return undefined;
  } finally {
    state.busy = false;
    document.body.dataset.state = state.model && state.photo ? 'ready' : 'waiting';
    if (!ui.error.hidden) document.body.dataset.state = 'error';
    refreshButtons();
  }
}

function refreshButtons(): void {
  ui.ask.disabled = state.busy || !state.model || !state.photo;
  document.querySelectorAll<HTMLButtonElement>('#model-card button').forEach((b) => (b.disabled = state.busy));
}

// ------------------------------------------------------------------------------------------
// Backend: WebGPU when navigator.gpu gives an adapter, else wasm (?backend=wasm forces it).

async function startBackend(): Promise<string> {
  setWasmPaths(site('wasm/')); // the .wasm binaries, copied into the site by vite.config.ts
  const want = new URLSearchParams(location.search).get('backend');
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string } } | null> } }).gpu;
  if (want !== 'wasm' && gpu) {
    const adapter = await gpu.requestAdapter().catch(() => null);
    // tfjs's webgpu backend on a device with the features the library's kernels use (subgroups).
    if (adapter && registerWebGPUBackend(WebGPUBackend) && (await tf.setBackend('webgpu').catch(() => false))) {
      await tf.ready();
      const info = [adapter.info?.vendor, adapter.info?.architecture, webgpuHasSubgroups() ? 'subgroups' : ''].filter(Boolean).join(' ');
      return `webgpu${info ? ` (${info})` : ''}`;
    }
  }
  if (want === 'webgpu') throw new Error('?backend=webgpu, but navigator.gpu gives no adapter here');
  if (!(await tf.setBackend('wasm'))) throw new Error('neither WebGPU nor wasm could start');
  await tf.ready();
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  return `wasm (${simd ? 'SIMD' : 'no SIMD'}, ${threads ? 'threads' : '1 thread'})${gpu ? '' : ' — no WebGPU in this browser'}`;
}

// ------------------------------------------------------------------------------------------
// Model

function describeModel(m: InfLlava, label: string): string {
  const v = m.vision.config;
  return `${label}: DCM ${v.grid}×${v.grid} of ${v.imageSize}² px, CLIP ${m.vision.clip.config.numHiddenLayers} layers × ${v.mmHiddenSize}, DEM ${v.heads} heads, LLaMA ${m.llm.config.numHiddenLayers} layers × ${m.llm.config.hiddenSize}`;
}

async function loadModel(checkpoint: Source | 'bundled', vision: Source | undefined, label: string): Promise<void> {
  await busy(`loading ${label}`, async () => {
    const t0 = performance.now();
    const source = checkpoint === 'bundled' ? await bundledFiles() : checkpoint;
    const next = await loadInfLlava(source, vision === undefined ? {} : { visionDir: vision });
    state.model?.dispose();
    state.model = next;
    timing('load_model', performance.now() - t0);
    ui.model.textContent = describeModel(next, label);
    document.getElementById('tiny-note')!.hidden = checkpoint !== 'bundled';
    ui.maxTokens.value = checkpoint === 'bundled' ? '48' : '256';
    const heads = next.vision.config.heads;
    ui.demHead.replaceChildren(new Option('mean of all heads', 'mean'), ...Array.from({ length: heads }, (_, h) => new Option(`head ${h}`, String(h))));
    if (state.photo) await showPhoto(state.photo); // the sub-image size follows the model's
  });
}

/** The files of a picked folder (webkitdirectory): all of them, nested paths included. */
function folderFiles(input: HTMLInputElement): File[] | undefined {
  return input.files && input.files.length > 0 ? Array.from(input.files) : undefined;
}

// ------------------------------------------------------------------------------------------
// Photo

/** Decodes an image file with the browser's decoder into an `[H, W, 3]` int32 tensor. */
async function decodePhoto(blob: Blob): Promise<tf.Tensor3D> {
  const bitmap = await createImageBitmap(blob);
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const rgb = new Int32Array((rgba.length / 4) * 3);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
    rgb[o] = rgba[i]!;
    rgb[o + 1] = rgba[i + 1]!;
    rgb[o + 2] = rgba[i + 2]!;
  }
  return tf.tensor3d(rgb, [canvas.height, canvas.width, 3], 'int32');
}

/** Draws the DCM view and the DEM view's photo for `photo`. */
async function showPhoto(photo: Photo): Promise<void> {
  const v = state.model?.vision.config;
  const n = v?.grid ?? 3;
  const tile = Math.max(v?.imageSize ?? 336, 336); // tiny models have tiny S: show at least 336² tiles
  const t0 = performance.now();
  photo.square = await drawSubImages(photo.rgb, n, tile, document.getElementById('local-grid')!, document.getElementById('global-grid')!);
  timing('dcm_view', performance.now() - t0);
  document.getElementById('dcm-note')!.textContent =
    `The photo (${photo.rgb.shape[1]}×${photo.rgb.shape[0]}) is padded to a square and resized to ${n}·${tile} = ${n * tile} px, then cut twice into ${n * n} sub-images of ${tile}² each` +
    (v && v.imageSize !== tile ? ` (this model's S is ${v.imageSize}: it sees them at ${v.imageSize}²).` : '.');
  ui.demPhoto.width = ui.demPhoto.height = photo.square.width;
  ui.demPhoto.getContext('2d')!.putImageData(photo.square, 0, 0);
  for (const c of [ui.demGlobal, ui.demLocal]) {
    c.width = c.height = photo.square.width;
    c.getContext('2d')!.putImageData(photo.square, 0, 0);
  }
  if (photo.maps) tf.dispose([photo.maps.L, photo.maps.G]);
  photo.maps = undefined;
  state.dem = undefined;
}

async function setPhoto(blob: Blob, name: string): Promise<void> {
  await busy(`reading ${name}`, async () => {
    const t0 = performance.now();
    const rgb = await decodePhoto(blob);
    timing('decode_photo', performance.now() - t0);
    if (state.photo) {
      state.photo.rgb.dispose();
      if (state.photo.maps) tf.dispose([state.photo.maps.L, state.photo.maps.G]);
    }
    state.photo = { rgb, name };
    document.getElementById('photo-info')!.textContent = `${name}, ${rgb.shape[1]}×${rgb.shape[0]}`;
    await showPhoto(state.photo);
  });
}

// ------------------------------------------------------------------------------------------
// Ask

async function ask(): Promise<void> {
  const { model, photo } = state;
  if (!model || !photo) return;
  ui.answer.textContent = '';
  ui.answer.dataset.state = 'running';
  const result = await busy('answering', () =>
    model.generate({
      image: photo.rgb,
      question: ui.question.value,
      maxNewTokens: Math.max(1, Number(ui.maxTokens.value) || 48),
      onToken: (text) => ui.answer.append(text),
      onProgress: (done, total) => setStatus(`encoding the image: ${done}/${total} sub-images through CLIP`),
    }),
  );
  if (!result) {
    ui.answer.dataset.state = 'error';
    return;
  }
  ui.answer.dataset.state = 'done';
  ui.answer.dataset.stopReason = result.stopReason;
  // decode_image is ~0 here: the photo reaches generate decoded (decode_photo above).
  for (const [k, v] of Object.entries(result.timings)) if (k !== 'decode_image') timing(k, v);
  setStatus(`answered: ${result.tokens.length} tokens, stopped: ${result.stopReason}`);
}

// ------------------------------------------------------------------------------------------
// DEM view

function redrawDem(): void {
  const { photo, dem } = state;
  if (!photo?.square || !dem) return;
  const head = ui.demHead.value === 'mean' ? -1 : Number(ui.demHead.value);
  drawHeat(ui.demGlobal, photo.square, dem.global, head, dem.query);
  drawHeat(ui.demLocal, photo.square, dem.local, head, dem.query);
}

async function attendAt(x: number, y: number): Promise<void> {
  const { model, photo } = state;
  if (!model || !photo) return;
  await busy('computing attention', async () => {
    const t0 = performance.now();
    photo.maps ??= featureMaps(model.vision, photo.rgb);
    const [, H, W] = photo.maps.L.shape;
    const query: [number, number] = [Math.min(H - 1, Math.floor(y * H)), Math.min(W - 1, Math.floor(x * W))];
    const p = await attentionAt(model.vision, photo.maps, query);
    state.dem = { ...p, query };
    timing('dem_view', performance.now() - t0);
    redrawDem();
    const n = model.vision.config.grid;
    const [h, w] = [H / n, W / n];
    for (const [canvas, caption, probs, text] of [
      [ui.demGlobal, 'dem-global-caption', p.global, `global as query at cell (${query[0]}, ${query[1]}) of ${H}×${W} → the local features of its contiguous window (${Math.floor(query[0] / h)}, ${Math.floor(query[1] / w)}), ${h}×${w} cells`],
      [ui.demLocal, 'dem-local-caption', p.local, `local as query → the global features of its strided window (${query[0] % n}, ${query[1] % n}): every ${n}rd cell, over the whole image`],
    ] as const) {
      document.getElementById(caption)!.textContent = text;
      canvas.dataset.row = String(query[0]);
      canvas.dataset.col = String(query[1]);
      canvas.dataset.heads = String(probs.heads);
      canvas.dataset.sum = String(probs.data.reduce((a, b) => a + b, 0) / probs.heads); // 1 per head
    }
  });
}

// ------------------------------------------------------------------------------------------
// Wiring

ui.imageInput.addEventListener('change', () => {
  const f = ui.imageInput.files?.[0];
  if (f) void setPhoto(f, f.name);
});
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer?.files[0];
  if (f) void setPhoto(f, f.name);
});
ui.ask.addEventListener('click', () => void ask());
ui.question.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !ui.ask.disabled) {
    e.preventDefault();
    void ask();
  }
});
ui.demPhoto.addEventListener('click', (e) => {
  const r = ui.demPhoto.getBoundingClientRect();
  void attendAt((e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height);
});
ui.demHead.addEventListener('change', redrawDem);
$('load-bundled').addEventListener('click', () => void loadModel('bundled', undefined, BUNDLED.label));
$('load-folder').addEventListener('click', () => {
  const files = folderFiles(ui.modelFolder);
  if (!files) return fail(new Error('pick the checkpoint folder first'), 'loading folders');
  const name = files[0]!.webkitRelativePath.split('/')[0] || 'picked folder';
  void loadModel(files, folderFiles(ui.visionFolder), `${name} (folder)`);
});
$('load-url').addEventListener('click', () => {
  const url = ui.modelUrl.value.trim();
  if (!url) return fail(new Error('enter the checkpoint URL first'), 'loading URLs');
  void loadModel(url, ui.visionUrl.value.trim() || undefined, url);
});

try {
  ui.backend.textContent = await startBackend();
  await loadModel('bundled', undefined, BUNDLED.label);
  const res = await fetch(SAMPLE_PHOTO);
  if (!res.ok) throw new Error(`${SAMPLE_PHOTO}: HTTP ${res.status}`);
  await setPhoto(await res.blob(), 'extreme_ironing.jpg (sample)');
} catch (e) {
  fail(e, 'starting');
}
