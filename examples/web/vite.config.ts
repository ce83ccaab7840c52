/**
 * The demo page: `npm run demo:build` → examples/web/dist/, a static site served from its root
 * (any static server; the page uses relative URLs, so a sub-path works too). `npm run demo`
 * serves it for development.
 *
 * The bundled tiny checkpoint, its CLIP tower, the sample photo and tfjs's wasm binaries are not
 * copied into this folder: a plugin serves them in development and writes them into the site at
 * build time, from where they live in the repository (vitePlugins.ts).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import { noNodeBuiltins, repositoryFiles, siteFiles } from './vitePlugins.js';

const here = dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  // A missing file is a 404, not index.html: the loaders look for optional files (a sharded
  // checkpoint's index, a chat template) and must see that they are not there.
  appType: 'mpa',
  publicDir: false,
  plugins: [repositoryFiles(siteFiles()), noNodeBuiltins()],
  build: {
    outDir: join(here, 'dist'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
    reportCompressedSize: false,
  },
  logLevel: 'warn',
});
