/**
 * The browser tests' page (test/browser.test.ts): the library's main entry and both browser
 * backends, bundled for the browser; the tests call into it through `window.harness`.
 * The wasm binaries and the fixtures are served by the test's server, not copied.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import { noNodeBuiltins } from '../../../examples/web/vitePlugins.js';

const here = dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  publicDir: false,
  plugins: [noNodeBuiltins()],
  build: {
    outDir: process.env.HARNESS_OUT_DIR ?? join(here, '..', '..', 'artifacts', 'browser-page'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
    reportCompressedSize: false,
    sourcemap: true,
  },
  logLevel: 'warn',
});
