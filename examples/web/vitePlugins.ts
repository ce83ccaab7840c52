/** Vite plugins shared by the demo (vite.config.ts) and the browser tests' page (test/browser/page). */
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Plugin } from 'vite';
import { staticHandler } from './server.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The demo's files that live elsewhere in the repository, URL path → file: the sample photo,
 * the bundled tiny checkpoint and its CLIP tower (`models/…`), tfjs's wasm binaries (`wasm/…`).
 */
export function siteFiles(): Record<string, string> {
  const files: Record<string, string> = { 'extreme_ironing.jpg': join(repo, 'assets', 'extreme_ironing.jpg') };
  for (const model of ['tiny-inf-llava', 'tiny-clip']) {
    for (const f of readdirSync(join(repo, 'assets', model))) files[`models/${model}/${f}`] = join(repo, 'assets', model, f);
  }
  const wasm = join(repo, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist');
  for (const f of readdirSync(wasm).filter((n) => n.endsWith('.wasm'))) files[`wasm/${f}`] = join(wasm, f);
  return files;
}

/** Serves `files` in development (with Range support) and writes them into the site at build time. */
export function repositoryFiles(files: Record<string, string>): Plugin {
  return {
    name: 'inf-llava-repository-files',
    configureServer(server) {
      const handler = staticHandler({ files });
      server.middlewares.use((req, res, next) => handler(req, res, next));
    },
    generateBundle() {
      for (const [fileName, file] of Object.entries(files)) this.emitFile({ type: 'asset', fileName, source: readFileSync(file) });
    },
  };
}

/** Fails the build when a module under src/ imports a Node built-in: the library's main entry must be browser-safe. */
export function noNodeBuiltins(): Plugin {
  const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
  const src = join(repo, 'src');
  return {
    name: 'inf-llava-no-node-builtins',
    enforce: 'pre',
    resolveId(id, importer) {
      if (builtins.has(id) && importer && resolve(importer).startsWith(src)) {
        throw new Error(`${importer} imports the Node built-in '${id}': the library's main entry must be browser-safe`);
      }
      return null;
    },
  };
}
