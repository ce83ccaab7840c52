// The published shape: ESM + CJS + types through the exports map, resolved by self-reference
// in child processes (plain Node, not vitest's resolver). Needs `npm run build` first (npm test does it).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const API = [
  'ATTENTION_LAYOUTS', 'CLIP_MEAN', 'CLIP_STD', 'CLIP_VIT_L_14_336', 'IMAGE_TOKEN', 'IMAGE_TOKEN_INDEX',
  'LLAMA3_STOP_TOKENS', 'LLAMA3_SYSTEM_MESSAGE', 'LLAVA_PAD_RGB', 'LazyWeights', 'SAFETENSORS_MAX_HEADER_BYTES',
  'applyChatTemplate', 'argmax', 'attention', 'attentionPlan', 'avgPool', 'clipVisionConfigFromJson',
  'clipVisionFromTensors', 'decodeImage', 'decodeTensor', 'demAttentionMap', 'dequantizePacked', 'dequantizeRows',
  'detectClipVisionPrefix', 'dualPerspectiveAttentionMaps', 'dualPerspectiveEnhance', 'globalStrideCrop',
  'guardWasmHeap', 'initClipVisionTensors', 'initSpatialEmbed', 'isLazyWeights', 'kvCacheWrite', 'linearConcatFuse',
  'listSafetensorsEntries', 'llamaConfigFromJson', 'llamaFromTensors', 'llamaRopeInvFreq', 'llamaTensorNames',
  'loadClipVision', 'loadInfLlava', 'loadInfLlavaVision', 'loadLlama', 'loadSafetensors', 'loadSafetensorsRaw',
  'loadTokenizer', 'localCrop', 'officialPromptText', 'openByteSource', 'openModelDirectory', 'packBf16',
  'packedLinear', 'packedLinearPlan', 'parseSafetensorsHeader', 'preprocessImage', 'project', 'projectorFromTensors',
  'promptIds', 'quantGroupSize', 'quantizeQ4', 'quantizeQ8', 'readSafetensors', 'recombine2D', 'registerWebGPUBackend',
  'resizeBicubic', 'sampleNext', 'saveSafetensors', 'seededRng', 'setBf16Simd', 'spatialEmbed',
  'spatialEmbedFromStateDict', 'spatialEmbedToStateDict', 'stopIds', 'tokenizerFromJson', 'tokenizerImageToken',
  'webgpuHasSubgroups',
];
const script = (load: string) =>
  `${load}; const tf = require('@tensorflow/tfjs-core'); require('@tensorflow/tfjs-backend-cpu');` +
  `tf.setBackend('cpu').then(() => { const t = m.localCrop(tf.zeros([1, 6, 6, 3]), 3);` +
  `console.log(JSON.stringify({ api: Object.keys(m).sort(), shape: t.shape })); });`;

function run(args: string[]): { api: string[]; shape: number[] } {
  return JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' }).trim().split('\n').pop()!);
}

describe('package', () => {
  it('dist has ESM, CJS and declarations', () => {
    for (const f of ['dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts']) expect(existsSync(f), f).toBe(true);
    const dts = readFileSync('dist/index.d.ts', 'utf8');
    for (const name of [...API, 'Grid']) expect(dts).toContain(name);
  });

  it("require('inf-llava') resolves through the exports map", () => {
    expect(run(['-e', script("const m = require('inf-llava')")])).toEqual({ api: API, shape: [9, 2, 2, 3] });
  });

  it("import('inf-llava') resolves through the exports map", () => {
    const esm = `import('inf-llava').then((m) => { const require = (n) => globalThis.__req(n); ${script('')} });`;
    const code = `globalThis.__req = require('node:module').createRequire(process.cwd() + '/'); ${esm}`;
    expect(run(['-e', code])).toEqual({ api: API, shape: [9, 2, 2, 3] });
  });

  it("'inf-llava/node' resolves (ESM and CJS) and exports the backend starter", () => {
    const code = (load: string) => `${load}.then((m) => console.log(JSON.stringify({ api: Object.keys(m).sort(), shape: [] })))`;
    const expected = { api: ['AUTO_BACKENDS', 'BACKENDS', 'BACKEND_HINTS', 'BackendUnavailableError', 'useBackend', 'useFastestBackend'], shape: [] };
    expect(run(['-e', code("import('inf-llava/node')")])).toEqual(expected);
    expect(run(['-e', code("Promise.resolve(require('inf-llava/node'))")])).toEqual(expected);
  });

  it("'inf-llava/assets/*' resolves the bundled files (require.resolve and import.meta.resolve)", () => {
    const node = (args: string[]) => execFileSync(process.execPath, args, { encoding: 'utf8' }).trim();
    expect(node(['-e', "console.log(require.resolve('inf-llava/assets/extreme_ironing.jpg'))"])).toBe(resolve('assets/extreme_ironing.jpg'));
    expect(node(['--input-type=module', '-e', "console.log(import.meta.resolve('inf-llava/assets/tiny-inf-llava/config.json'))"])).toBe(
      pathToFileURL(resolve('assets/tiny-inf-llava/config.json')).href,
    );
  });

  it("maps 'inf-llava/node' to its declarations for TypeScript's node10 resolution (typesVersions), and names the repository", () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
    expect(pkg.typesVersions).toEqual({ '*': { node: ['./dist/node.d.ts'] } });
    expect(existsSync('dist/node.d.ts')).toBe(true);
    expect(pkg.exports['./assets/*']).toBe('./assets/*');
    expect(pkg.files).toContain('assets');
    expect(pkg.repository.url).toBe('git+https://github.com/inf-llava/inf-llava.git');
    expect(pkg.homepage).toMatch(/^https:\/\/github\.com\/inf-llava\/inf-llava/);
    expect(pkg.bugs.url).toBe('https://github.com/inf-llava/inf-llava/issues');
  });

  it('declares tfjs-core as a peer and every backend as an optional peer', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
    expect(pkg.peerDependencies['@tensorflow/tfjs-core']).toMatch(/^\^4\.22/);
    for (const b of ['@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-webgpu', '@tensorflow/tfjs-node']) {
      expect(pkg.peerDependenciesMeta[b]?.optional, b).toBe(true);
    }
    expect(pkg.dependencies?.['@tensorflow/tfjs-core']).toBeUndefined();
  });
});
