// `inf-llava chat --quantize q8|q4` (docs/quantization.md) as a user runs it: `node dist/cli.js`
// (npm test builds first; alone: `npm run build && npx vitest run test/cliQuantize.test.ts`).
// The bundled tiny model has hidden size 48, so its q4 groups are 16 weights wide.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';

const CI = process.env.CI === 'true';
/** The webgpu case: always in CI, locally on request (it takes minutes on SwiftShader). */
const WEBGPU_CASE = CI || process.env.INF_LLAVA_CLI_WEBGPU === '1';

const cli = (args: string[]) => spawnSync(process.execPath, ['dist/cli.js', ...args], { encoding: 'utf8', timeout: 120_000 });

describe('inf-llava chat --quantize', () => {
  beforeAll(() => {
    if (!existsSync('dist/cli.js')) throw new Error('dist/cli.js missing: run npm run build first (npm test does)');
  });

  it('--quantize q4 and q8 run the bundled tiny model end to end; the resident bytes are reported', () => {
    for (const q of ['q4', 'q8'] as const) {
      const r = cli(['chat', '--backend', 'cpu', '--quantize', q, '--max-tokens', '3', '--json', 'What is in the image?']);
      expect(r.status, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { tokens: number[]; quantize: string; weight_bytes: Record<string, number> };
      expect(j.tokens.length).toBeGreaterThan(0);
      expect(j.quantize).toBe(q);
      // The tiny model: 2 layers of q, o [48, 48], k, v [24, 48], gate, up [96, 48] (K = 48: groups
      // of 16) and down [48, 96] (K = 96: groups of 32), and lm_head [368, 48].
      const k48 = 2 * (48 * 48 * 2 + 24 * 48 * 2 + 2 * 96 * 48) + 368 * 48;
      const k96 = 2 * 48 * 96;
      const groups = k48 / 16 + k96 / 32;
      expect(j.weight_bytes).toMatchObject({ quantized: q, linear: (k48 + k96) / (q === 'q4' ? 2 : 1), scales: groups * 4 * (q === 'q4' ? 2 : 1) });
    }
    const r = cli(['chat', '--backend', 'wasm', '--quantize', 'q4', '--max-tokens', '2', 'What is in the image?']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^language model weights \(q4\): [\d.]+ MB = linear [\d.]+ MB \+ scales [\d.]+ MB \+ embedding [\d.]+ MB/m);
    expect(r.stderr).toMatch(/\[wasm\] 2 tokens, stopped: max_tokens/);
  });

  // The whole pipeline on one GPU: 18 CLIP passes, DEM, projector, prefill and decode on webgpu,
  // the language model's q4 weights resident. Mostly shader compilation on SwiftShader: 55 s on an
  // idle 2-core machine, 4–5 minutes on a busy one, so it runs in CI (where webgpu is required)
  // and locally only with INF_LLAVA_CLI_WEBGPU=1 (then skipped where webgpu cannot start).
  it.skipIf(!WEBGPU_CASE)('--backend webgpu --quantize q4 (CI, or INF_LLAVA_CLI_WEBGPU=1): the tiny model end to end on the GPU, time to first token and tokens/s reported', async (ctx) => {
    if (!CI) {
      const { backendStatus } = await import('./backends.js');
      const why = (await backendStatus()).get('webgpu');
      if (why) ctx.skip(`webgpu unavailable: ${why}`);
    }
    const r = spawnSync(process.execPath, ['dist/cli.js', 'chat', '--backend', 'webgpu', '--quantize', 'q4', '--max-tokens', '3', '--json', 'What is in the image?'], { encoding: 'utf8', timeout: 400_000 });
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { backend: string; tokens: number[]; quantize: string; timings_ms: Record<string, number> };
    expect(j.backend).toBe('webgpu');
    expect(j.quantize).toBe('q4');
    expect(j.tokens.length).toBe(3);
    expect(j.timings_ms.time_to_first_token).toBeGreaterThan(0);
    expect(j.timings_ms.tokens_per_second).toBeGreaterThan(0);
  }, 420_000);

  it('a bad or missing value: exit 2, the message and the usage on stderr, nothing on stdout', () => {
    for (const [args, pattern] of [
      [['chat', '--quantize', 'q3', 'q'], /^inf-llava: --quantize must be q8 or q4, got "q3"$/m],
      [['chat', '--quantize'], /^inf-llava: --quantize needs a value$/m],
    ] as Array<[string[], RegExp]>) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr).toMatch(/^usage: inf-llava chat \[options\] "question"$/m);
    }
  });

  it('--help lists --quantize with its values and default', () => {
    const r = cli(['--help']);
    expect(r.stdout).toMatch(/^ {2}--quantize q8\|q4 +quantise the language model's linear weights at load/m);
    expect(r.stdout).toContain("[none: the\n                             checkpoint's dtype]");
  });
});
