// In real Chromium (Debian's chromium, playwright-core, WebGPU on SwiftShader; test/browser/chromium.ts):
// (a) the golden DCM and DEM cases inside a page, on webgpu and on wasm, against the same oracle
//     and fixtures, with the same tolerances, as test/dcm.test.ts and test/demParity.test.ts;
// (b) loading from URLs inside the page against a Range-capable server on 127.0.0.1, counting the
//     bytes it serves, and from File objects (what a picked folder gives);
// (c) the demo (examples/web, built here) end to end, with a screenshot in test/artifacts/.
// Any console error, uncaught exception or failed request in a page fails the test.
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStaticServer, type StaticServer } from '../examples/web/server.js';
import { siteFiles } from '../examples/web/vitePlugins.js';
import { decodeImage, loadInfLlava, parseSafetensorsHeader, readSafetensors, type Grid } from '../src/index.js';
import { useBackend } from '../src/backends/node.js';
import { browser, closeBrowser, describeInChromium, expectNoPageErrors, openPage, viteBuild, vitePreview, type CheckedPage } from './browser/chromium.js';
import type { Encoded } from './browser/page/main.js';
import { cropIndexMap, expectCloseScaled, expectExact, gather, maxRelErr, randomData, type Shape4 } from './oracle.js';

const ARTIFACTS = 'test/artifacts';
const HARNESS_DIR = resolve(ARTIFACTS, 'browser-page');
const DEMO_DIST = 'examples/web/dist';
const BACKENDS = ['webgpu', 'wasm'] as const;
type PageBackend = (typeof BACKENDS)[number];
const SLOW = 600_000;

function encode(data: Float32Array | Int32Array, shape: number[]): Encoded {
  return { dtype: data instanceof Int32Array ? 'int32' : 'float32', shape, b64: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') };
}

function decoded(e: Encoded): Float32Array | Int32Array {
  const b = Buffer.from(e.b64, 'base64');
  const copy = new Uint8Array(b); // aligned
  return e.dtype === 'int32' ? new Int32Array(copy.buffer) : new Float32Array(copy.buffer);
}

/** `window.harness[name](...args)` in the page. */
function call<T>(page: Page, name: string, ...args: unknown[]): Promise<T> {
  return page.evaluate(([n, a]) => (window as unknown as { harness: Record<string, (...x: unknown[]) => Promise<unknown>> }).harness[n as string]!(...(a as unknown[])), [name, args] as const) as Promise<T>;
}

await describeInChromium('in Chromium', () => {
  let server: StaticServer;
  let harness: CheckedPage;

  beforeAll(async () => {
    await useBackend('cpu'); // this process reads the fixtures and the reference (on wasm: switched below)
    mkdirSync(ARTIFACTS, { recursive: true });
    viteBuild('test/browser/page/vite.config.ts', { HARNESS_OUT_DIR: HARNESS_DIR });
    const files: Record<string, string> = {};
    for (const [path, file] of Object.entries(siteFiles())) if (path.startsWith('wasm/')) files[path] = file;
    for (const f of readdirSync('test/fixtures/dem')) files[`fixtures/dem/${f}`] = join('test/fixtures/dem', f);
    for (const model of ['tiny-inf-llava', 'tiny-clip']) for (const f of readdirSync(`assets/${model}`)) files[`ckpt/${model}/${f}`] = `assets/${model}/${f}`;
    server = await startStaticServer({ root: HARNESS_DIR, files });
    harness = await openPage(server.url);
    await harness.waitFor(() => document.body.dataset.state === 'ready', 60_000);
  }, SLOW);

  afterAll(async () => {
    await closeBrowser();
    await server?.close();
  });

  for (const backend of BACKENDS) {
    describe(`[${backend}] golden DCM and DEM cases in a page`, () => {
      let unavailable: string | undefined;
      beforeAll(async () => {
        try {
          const r = await call<{ backend: string; adapter?: string }>(harness.page, 'use', backend);
          expect(r.backend).toBe(backend);
          console.log(`page backend: ${r.backend}${r.adapter ? ` (adapter: ${r.adapter})` : ''}`);
        } catch (e) {
          unavailable = (e as Error).message;
          harness.errors.splice(0); // reported by the tests below instead
        }
      });
      /** The page's backend is active, or this test is skipped (fails in CI). */
      const need = (skip: () => void) => {
        if (!unavailable) return;
        if (process.env.CI === 'true') throw new Error(`'${backend}' does not start in Chromium: ${unavailable}`);
        console.warn(`NOTICE: skipping a browser test on '${backend}': ${unavailable}`);
        skip();
      };

      // test/dcm.test.ts's grids and sizes (a representative subset) and the official 1008² n = 3.
      const cases: Array<[Grid, [number, number], Shape4]> = [
        [3, [3, 3], [1, 12, 9, 3]],
        [[2, 5], [2, 5], [3, 10, 10, 1]],
        [[1, 4], [1, 4], [1, 2, 28, 5]],
        [3, [3, 3], [1, 1008, 1008, 3]],
      ];
      for (const perspective of ['local', 'global'] as const) {
        for (const [grid, rg, shape] of cases) {
          it(`DCM ${perspective} grid ${JSON.stringify(grid)} on ${JSON.stringify(shape)}: float32 and int32 match the oracle; round trips are exact`, async (ctx) => {
            need(() => ctx.skip());
            const size = shape.reduce((a, b) => a * b);
            const index = cropIndexMap(shape, rg, perspective);
            const f32 = randomData(size, rg[0] * 100 + rg[1] + shape[0]);
            // tfjs-backend-webgpu computes int32 through f32: exact only for |v| <= 2^24 (see rearrange.ts).
            const range = backend === 'webgpu' ? 2 ** 24 : 2 ** 31;
            const i32 = Int32Array.from(randomData(size, 11 + shape[0]), (v) => Math.round(v * range - 0.5));
            for (const data of [f32, i32]) {
              const r = await call<{ tiles: Encoded; back: Encoded; left: number }>(harness.page, 'dcm', encode(data, shape), grid, perspective);
              expect(r.tiles.dtype).toBe(data instanceof Int32Array ? 'int32' : 'float32');
              expect(r.tiles.shape).toEqual([shape[0] * rg[0] * rg[1], shape[1] / rg[0], shape[2] / rg[1], shape[3]]);
              expectExact(decoded(r.tiles), gather(data, index), `${r.tiles.dtype} crop vs oracle`);
              expectExact(decoded(r.back), data, `${r.tiles.dtype} recombine2D(crop(x)) vs x`);
              expect(r.left, 'tensors left in the page').toBe(0);
            }
            expectNoPageErrors(harness);
          }, SLOW);
        }
      }

      // test/demParity.test.ts's fixtures (the forward cases that cover each option) and its tolerance.
      const demCases = [
        'official_n3_d64',
        'official_n2_b2_d32',
        'nonsquare_tiles_h4w6_n3_d48',
        'grid_2x3_b2_d32',
        'windows_paper_n3_d32',
        'paper_variant_n3_d32',
        'out_size_2x3_n2_d32',
        'bf16_weights_n3_d64',
      ];
      // Element by element, as test/demParity.test.ts: |err| ≤ atol·max|ref| + rtol·|ref|. Measured
      // in Chromium: max|err|/max|ref| 2.4e-7 (webgpu), 2.8e-7 (wasm); at most 10 % of this bound used.
      const tol = { rtol: 1e-6, atol: 2e-6 };
      const exact = { rtol: 0, atol: 0 };
      let worst = 0;
      afterAll(() => {
        if (worst > 0) console.log(`[page ${backend}] worst DEM max|err|/max|ref|: ${worst.toExponential(2)}`);
      });
      for (const name of demCases) {
        it(`DEM ${name}: every stage matches PyTorch (element-wise, |err| <= ${tol.atol}·max|ref| + ${tol.rtol}·|ref|)`, async (ctx) => {
          need(() => ctx.skip());
          const { tensors: ref } = readSafetensors(new Uint8Array(readFileSync(`test/fixtures/dem/${name}.safetensors`)));
          try {
            const r = await call<{ stages: Record<string, Encoded>; left: number }>(harness.page, 'dem', `${server.url}fixtures/dem/${name}.safetensors`);
            for (const [stage, stageTol] of [['stage.L', exact], ['stage.G', exact], ['stage.enhanced_local', tol], ['stage.enhanced_global', tol], ['stage.fused', tol], ['output', tol]] as const) {
              const got = r.stages[stage]!;
              expect(got.shape, `${stage}: shape`).toEqual(ref[stage]!.shape);
              const [a, e] = [decoded(got), ref[stage]!.dataSync()];
              worst = Math.max(worst, maxRelErr(a, e, stage));
              expectCloseScaled(a, e, stageTol.rtol, stageTol.atol, stage);
            }
            expect(r.left, 'tensors left in the page').toBe(0);
          } finally {
            tf.dispose(Object.values(ref));
          }
          expectNoPageErrors(harness);
        }, SLOW);
      }
    });
  }

  describe('[wasm] loading from URLs and Files inside the page', () => {
    const CKPT = 'assets/tiny-inf-llava/model.safetensors';
    const url = () => `${server.url}ckpt/tiny-inf-llava/model.safetensors`;
    beforeAll(async () => {
      await call(harness.page, 'use', 'wasm');
    });

    it('loadSafetensors(url, { prefix }) fetches the header and only the wanted tensors, with Range requests', async () => {
      const bytes = new Uint8Array(readFileSync(CKPT));
      const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
      const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length, CKPT);
      const prefix = 'model.spatial_embed.';
      const wanted = header.entries.filter((e) => e.name.startsWith(prefix));
      const wantedBytes = wanted.reduce((a, e) => a + e.end - e.begin, 0);
      server.reset();
      const r = await call<{ tensors: Record<string, Encoded>; left: number }>(harness.page, 'loadSafetensors', url(), prefix);
      const { tensors: all } = readSafetensors(bytes);
      try {
        expect(Object.keys(r.tensors).sort()).toEqual(wanted.map((e) => e.name).sort());
        for (const [name, t] of Object.entries(r.tensors)) {
          expect(t.shape, name).toEqual(all[name]!.shape);
          expectExact(decoded(t), all[name]!.dataSync(), name);
        }
      } finally {
        tf.dispose(Object.values(all));
      }
      expect(r.left).toBe(0);
      const reqs = server.requests.filter((q) => q.path === '/ckpt/tiny-inf-llava/model.safetensors' && q.method === 'GET');
      const served = reqs.reduce((a, q) => a + q.bytes, 0);
      console.log(
        `loadSafetensors(url, { prefix: '${prefix}' }): ${reqs.length} requests, ${served} bytes served of a ${bytes.length}-byte file ` +
          `(header ${8 + n} bytes + ${wanted.length} tensors of ${wantedBytes} bytes = ${8 + n + wantedBytes}): ${reqs.map((q) => `${q.status} ${q.range}`).join(', ')}`,
      );
      expect(reqs.length).toBeGreaterThan(0);
      for (const q of reqs) {
        expect(q.range, 'every read is a Range request').toMatch(/^bytes=\d+-\d+$/);
        expect(q.status).toBe(206);
      }
      // The wanted bytes once each, the header, and no more than 64 KiB of read-ahead.
      expect(served).toBeGreaterThanOrEqual(wantedBytes);
      expect(served).toBeLessThanOrEqual(8 + n + wantedBytes + 65_536);
      expect(served).toBeLessThan(bytes.length / 2);
      expectNoPageErrors(harness);
    }, SLOW);

    it('loadInfLlava(base URL) and loadInfLlava(File[]) answer as Node does on wasm', async () => {
      // The same RGB pixels on both sides: decoded here, sent into the page.
      const rgb = await decodeImage(new Uint8Array(readFileSync('assets/extreme_ironing.jpg')));
      const image = encode(Int32Array.from(rgb.dataSync()), rgb.shape);
      rgb.dispose();
      const question = 'What is unusual about this image?';
      const maxNew = 12;
      await useBackend('wasm');
      const model = await loadInfLlava('assets/tiny-inf-llava');
      const px = tf.tensor3d(decoded(image) as Int32Array, image.shape as [number, number, number], 'int32');
      const node = await model.generate({ image: px, question, maxNewTokens: maxNew });
      px.dispose();
      model.dispose();

      const files = readdirSync('assets/tiny-inf-llava');
      const base = `${server.url}ckpt/tiny-inf-llava/`;
      for (const from of ['url', 'files'] as const) {
        server.reset();
        const r = await call<{ text: string; tokens: number[]; stopReason: string; streamed: string[] }>(harness.page, 'generate', from, base, files, image, question, maxNew);
        const served = server.bytesSent('/ckpt/');
        console.log(`[page wasm] loadInfLlava(${from}): ${JSON.stringify(r.text)} (${r.tokens.length} tokens, ${r.stopReason}); ${served} bytes served in ${server.requests.length} requests`);
        expect(r.tokens, `tokens from loadInfLlava(${from}) in the page vs Node`).toEqual(node.tokens);
        expect(r.text).toBe(node.text);
        expect(r.streamed.join('')).toBe(r.text);
        const total = files.reduce((a, f) => a + statSync(`assets/tiny-inf-llava/${f}`).size, 0);
        // Every file at most once (the tiny checkpoint's tensors are nearly all needed).
        expect(served).toBeLessThanOrEqual(total + 65_536);
      }
      expectNoPageErrors(harness);
    }, SLOW);

    it('a server without Range support: a clear error, or the whole file', async () => {
      const plain = await startStaticServer({ files: { 'model.safetensors': CKPT }, range: false });
      try {
        const msg = await call<string | null>(harness.page, 'loadSafetensorsError', `${plain.url}model.safetensors`);
        const served = plain.bytesSent();
        console.log(`server without Range: ${msg === null ? `loaded with ${served} bytes served (the whole file)` : `error: ${msg}`}`);
        if (msg !== null) expect(msg).toMatch(/range/i);
        else expect(served).toBe(statSync(CKPT).size);
      } finally {
        await plain.close();
      }
      expectNoPageErrors(harness);
    }, SLOW);
  });

  // The site is served twice: by this test's static server (webgpu run), and by `vite preview`, one
  // of the README's commands (wasm run).
  describe('the demo (examples/web) end to end', () => {
    let demo: StaticServer;
    let preview: { url: string; close(): Promise<void> };
    const timings: Record<string, Record<string, number>> = {};
    beforeAll(async () => {
      viteBuild('examples/web/vite.config.ts'); // = npm run demo:build
      demo = await startStaticServer({ root: DEMO_DIST });
      preview = await vitePreview('examples/web/vite.config.ts');
    }, SLOW);
    afterAll(async () => {
      await demo?.close();
      await preview?.close();
      writeFileSync(join(ARTIFACTS, 'demo-timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
    });

    /** Waits for the page to be idle; it must not have failed. */
    const ready = async (p: CheckedPage) => {
      await p.waitFor(() => ['ready', 'error'].includes(document.body.dataset.state ?? ''), 300_000);
      const error = await p.page.locator('[data-testid=error]').textContent();
      expect(await p.page.evaluate(() => document.body.dataset.state), `the page's error: ${error}`).toBe('ready');
    };

    for (const mode of ['webgpu', 'wasm'] as const) {
      it(`${mode}: photo in, 18 sub-images, a streamed answer, the backend named, the DEM view, a screenshot`, async (ctx) => {
        const site = mode === 'wasm' ? preview.url : demo.url;
        const p = await openPage(`${site}${mode === 'wasm' ? '?backend=wasm' : ''}`);
        const { page } = p;
        try {
          await ready(p);
          const backend = (await page.locator('[data-testid=backend]').textContent()) ?? '';
          if (mode === 'webgpu' && !backend.startsWith('webgpu')) {
            if (process.env.CI === 'true') throw new Error(`the demo did not start WebGPU: ${backend}`);
            console.warn(`NOTICE: the demo fell back to ${backend}; skipping its webgpu run`);
            return ctx.skip();
          }
          expect(backend).toMatch(new RegExp(`^${mode}`));
          expect(await page.locator('[data-testid=subimage]').count()).toBe(18);

          // A photo in, through the file input (the webgpu run takes the sample photo again, by
          // hand: its screenshot is the README's).
          const photoFile = mode === 'webgpu' ? 'assets/extreme_ironing.jpg' : 'test/fixtures/image/waterview.jpg';
          await page.locator('[data-testid=image-input]').setInputFiles(photoFile);
          const shownAs = `${photoFile.split('/').pop()}, `;
          await p.waitFor(`document.getElementById('photo-info')?.textContent?.startsWith(${JSON.stringify(shownAs)})`);
          await ready(p);
          const tiles = page.locator('[data-testid=subimage]');
          expect(await tiles.count()).toBe(18);
          expect(await page.locator('[data-testid=subimage][data-perspective=local]').count()).toBe(9);
          expect(await page.locator('[data-testid=subimage][data-perspective=global]').count()).toBe(9);
          expect(await tiles.nth(4).getAttribute('aria-label')).toBe('local (1,1)');

          if (mode === 'wasm') {
            // A real checkpoint's two ways in, with the tiny one: a picked folder, then a URL.
            await page.locator('[data-testid=model-folder]').setInputFiles('assets/tiny-inf-llava');
            await page.locator('[data-testid=load-folder]').click();
            await ready(p);
            expect(await page.locator('[data-testid=model]').textContent()).toContain('tiny-inf-llava (folder)');
            await page.locator('[data-testid=model-url]').fill(`${site}models/tiny-inf-llava/`);
            await page.locator('[data-testid=load-url]').click();
            await ready(p);
            expect(await page.locator('[data-testid=model]').textContent()).toContain(`${site}models/tiny-inf-llava/`);
          }

          // Ask; the answer streams in (one text node per onToken call).
          await page.locator('[data-testid=question]').fill(mode === 'webgpu' ? 'What is unusual about this image?' : 'What is in the water?');
          await page.locator('[data-testid=ask]').click();
          await p.waitFor(() => ['done', 'error'].includes(document.querySelector<HTMLElement>('[data-testid=answer]')?.dataset.state ?? ''), 300_000);
          const answer = page.locator('[data-testid=answer]');
          expect(await answer.getAttribute('data-state')).toBe('done');
          const text = (await answer.textContent()) ?? '';
          expect(text.length).toBeGreaterThan(0);
          expect(await answer.evaluate((el) => el.childNodes.length), 'streamed in pieces').toBeGreaterThan(1);

          // The DEM view: click a point of the photo.
          const photo = page.locator('[data-testid=dem-photo]');
          const box = (await photo.boundingBox())!;
          await photo.click({ position: { x: box.width * 0.42, y: box.height * 0.36 } });
          await ready(p);
          for (const id of ['dem-global-query', 'dem-local-query']) {
            const c = page.locator(`[data-testid=${id}]`);
            expect(await c.getAttribute('data-row'), id).not.toBeNull();
            expect(Number(await c.getAttribute('data-sum')), `${id}: probabilities sum to 1 per head`).toBeCloseTo(1, 4);
          }

          // The timings the page shows.
          const rows = await page.locator('[data-testid=timings] tr').evaluateAll((trs) => trs.map((tr) => [(tr as HTMLElement).dataset.stage!, Number((tr as HTMLElement).dataset.value)] as const));
          const shown = Object.fromEntries(rows);
          for (const k of ['load_model', 'decode_photo', 'dcm_view', 'encode_image', 'prefill', 'decode', 'total', 'dem_view']) expect(shown[k], `timing ${k}`).toBeGreaterThanOrEqual(0);
          timings[backend] = shown;
          console.log(`[demo, ${backend}] answer ${JSON.stringify(text)}; timings (ms): ${rows.map(([k, v]) => `${k} ${k === 'tokens_per_second' ? v.toFixed(1) : v.toFixed(0)}`).join(', ')}`);

          const shot = join(ARTIFACTS, mode === 'webgpu' ? 'demo.png' : 'demo-wasm.png');
          await page.screenshot({ path: shot, fullPage: true });
          if (mode === 'webgpu' && process.env.UPDATE_DEMO_SCREENSHOT === '1') {
            const { default: sharp } = await import('sharp'); // a 256-colour PNG: a third of the bytes
            await sharp(shot).png({ palette: true, quality: 90, compressionLevel: 9, effort: 10 }).toFile('docs/demo.png');
          }
          expectNoPageErrors(p, 'the demo');
        } finally {
          await page.close();
        }
      }, SLOW);
    }
  });

  it('ran in one browser', async () => {
    expect((await browser()).pages().length).toBeGreaterThan(0);
    expectNoPageErrors(harness, 'the harness page');
  });
});
