// The main entry is browser-safe: bundling 'inf-llava' (dist/index.js, what the exports map gives
// a bundler's "import" condition) for the browser with esbuild pulls in no Node built-in (fs,
// path, url, os, child_process, worker_threads, node:*…) and no Node-only package (sharp, pngjs,
// webgpu, @tensorflow/tfjs-node), statically or through a literal dynamic import; no Node-only
// source (src/backends/node.ts, src/cli/) is reachable from it. And the built package, run with
// `globalThis.process` removed (as in a browser), loads from a Blob, decodes a JPEG, and refuses
// a path with the documented message. Needs `npm run build` first (npm test does it).
import { build, type Metafile, type Plugin } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { describe, expect, it } from 'vitest';

const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
/** Packages that only work in Node: never reachable from the main entry by a literal import. */
const NODE_ONLY_PACKAGES = ['sharp', 'pngjs', 'webgpu', '@tensorflow/tfjs-node'];
/** Sources that belong behind 'inf-llava/node' (or the CLI). */
const NODE_ONLY_SOURCES = [/(^|\/)src\/backends\/node\.ts$/, /(^|\/)src\/cli\//, /(^|\/)dist\/node\.(c?js)$/, /(^|\/)dist\/cli\.js$/];

interface Found {
  path: string;
  kind: string;
  importer: string;
}

/** Records every import of a Node built-in or Node-only package (and keeps it external so the bundle completes); tfjs stays external. */
function recorder(found: Found[]): Plugin {
  return {
    name: 'node-import-recorder',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        const bare = args.path;
        const pkg = bare.startsWith('@') ? bare.split('/').slice(0, 2).join('/') : bare.split('/')[0]!;
        if (BUILTINS.has(bare) || BUILTINS.has(bare.split('/')[0]!) || bare.startsWith('node:') || NODE_ONLY_PACKAGES.includes(pkg)) {
          found.push({ path: bare, kind: args.kind, importer: args.importer });
          return { path: bare, external: true };
        }
        if (bare.startsWith('@tensorflow/')) return { path: bare, external: true };
        return undefined;
      });
    },
  };
}

async function bundle(entry: string): Promise<{ found: Found[]; metafile: Metafile; errors: string[] }> {
  const found: Found[] = [];
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'silent',
    plugins: [recorder(found)],
  }).catch((e: { errors?: { text: string; location?: { file: string } | null }[] }) => ({
    metafile: { inputs: {}, outputs: {} } as Metafile,
    errors: (e.errors ?? [{ text: String(e) }]).map((x) => `${x.text}${x.location ? ` (${x.location.file})` : ''}`),
  }));
  return { found, metafile: r.metafile!, errors: 'errors' in r ? (r.errors as string[]).map(String) : [] };
}

const list = (found: Found[]) => found.map((f) => `${f.kind} "${f.path}" from ${f.importer}`).join('\n');

describe('the main entry bundles for the browser', () => {
  it("package.json maps 'inf-llava' (import) to dist/index.js, and it exists", () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
    expect(pkg.exports['.'].import.default).toBe('./dist/index.js');
    expect(existsSync('dist/index.js'), 'dist/index.js is missing: run `npm run build` first').toBe(true);
  });

  it('dist/index.js: esbuild (platform browser) finds no Node built-in and no Node-only package, and no Node-only file', async () => {
    const { found, metafile, errors } = await bundle('dist/index.js');
    expect(errors, errors.join('\n')).toEqual([]);
    expect(found, `Node imports reachable from dist/index.js:\n${list(found)}`).toEqual([]);
    const inputs = Object.keys(metafile.inputs);
    expect(inputs).toContain('dist/index.js');
    expect(inputs.filter((f) => NODE_ONLY_SOURCES.some((re) => re.test(f)))).toEqual([]);
    // The library's own chunks, through their source maps: no Node-only source compiled into them.
    const sources = inputs
      .filter((f) => f.startsWith('dist/') && existsSync(`${f}.map`))
      .flatMap((f) => (JSON.parse(readFileSync(`${f}.map`, 'utf8')) as { sources: string[] }).sources.map((s) => s.replace(/^(\.\.\/)+/, '')));
    expect(sources).toContain('src/io/sources/path.ts');
    expect(sources.filter((s) => NODE_ONLY_SOURCES.some((re) => re.test(s)))).toEqual([]);
  });

  it('src/index.ts (bundled from source): the same, so a new Node import is caught before a build', async () => {
    const { found, metafile, errors } = await bundle('src/index.ts');
    expect(errors, errors.join('\n')).toEqual([]);
    expect(found, `Node imports reachable from src/index.ts:\n${list(found)}`).toEqual([]);
    const inputs = Object.keys(metafile.inputs);
    expect(inputs).toContain('src/io/loadSafetensors.ts');
    expect(inputs.filter((f) => NODE_ONLY_SOURCES.some((re) => re.test(f)))).toEqual([]);
  });

  it("the recorder does catch Node imports: 'inf-llava/node' (dist/node.js) is reported", async () => {
    const { found } = await bundle('dist/node.js');
    expect(found.length, 'dist/node.js imports Node modules').toBeGreaterThan(0);
  });

  it("the built package without globalThis.process (as in a browser): a Blob loads, a JPEG decodes, a path is refused with the documented message", () => {
    const script = `
      const proc = globalThis.process;
      const out = (s) => proc.stdout.write(s + '\\n');
      const tf = await import('@tensorflow/tfjs-core');
      await import('@tensorflow/tfjs-backend-cpu');
      await tf.setBackend('cpu');
      const m = await import('inf-llava');
      const jpg = new Uint8Array(proc.getBuiltinModule('node:fs').readFileSync('assets/extreme_ironing.jpg'));
      delete globalThis.process;
      const r = await m.loadSafetensors(new Blob([m.saveSafetensors({ a: tf.tensor([1, 2, 3]) })]));
      out(JSON.stringify({ blob: Array.from(r.tensors.a.dataSync()) }));
      out(JSON.stringify({ image: (await m.decodeImage(jpg)).shape }));
      for (const [name, f] of [['loadSafetensors', m.loadSafetensors], ['loadInfLlava', m.loadInfLlava]]) {
        out(JSON.stringify({ [name]: await f('assets/tiny-inf-llava').then(() => 'loaded', (e) => e.message) }));
      }
    `;
    const lines = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
    expect(lines[0]).toEqual({ blob: [1, 2, 3] });
    expect(lines[1]).toEqual({ image: [380, 570, 3] });
    expect(lines[2].loadSafetensors).toBe('loadSafetensors: paths need Node ≥ 20.16; in a browser pass a URL, a Blob/File or Files (or use readSafetensors on fetched bytes)');
    expect(lines[3].loadInfLlava).toMatch(/^loadInfLlava: paths need Node ≥ 20\.16; in a browser pass a URL, a Blob\/File or Files/);
  });
});
