// The command line as a new user meets it: `node dist/cli.js` (npm test builds first; alone:
// `npm run build && npx vitest run test/cli.test.ts`). Help and version on stdout, the backend
// chosen automatically and said in one line, no tfjs banner, and the JS image decoders end to end
// (forced with INF_LLAVA_NO_SHARP=1 here; in a project without sharp they are the default). The
// last block lays out a project like `npm install inf-llava @tensorflow/tfjs-core
// @tensorflow/tfjs-backend-cpu` gives (no tfjs-node, no wasm, no sharp), by links into this
// repository's node_modules, and runs the CLI there.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTO_BACKENDS, BackendUnavailableError, useBackend, useFastestBackend } from '../src/backends/node.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const BANNER = /Hi, looks like you are running TensorFlow\.js in Node\.js/;

type Ran = SpawnSyncReturns<string>;
/** Runs `node <cli> ...args` with `env` added to (or, when a value is undefined, removed from) this environment. */
function run(cli: string, args: string[], env: Record<string, string | undefined> = {}, cwd = ROOT): Ran {
  const merged: NodeJS.ProcessEnv = { ...process.env };
  delete merged.INF_LLAVA_NO_SHARP;
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete merged[k];
    else merged[k] = v;
  }
  return spawnSync(process.execPath, [cli, ...args], { cwd, env: merged, encoding: 'utf8', timeout: 120_000 });
}
const cli = (args: string[], env: Record<string, string | undefined> = {}) => run('dist/cli.js', args, env);
const lastJson = (r: Ran) => JSON.parse(r.stdout.trim().split('\n').pop()!) as { backend: string; text: string; tokens: number[]; stop_reason: string };

describe('inf-llava --help, --version and usage errors', () => {
  beforeAll(() => {
    if (!existsSync(join(ROOT, 'dist/cli.js'))) throw new Error('dist/cli.js missing: run npm run build first (npm test does)');
  });

  it('--help, -h, help, chat --help: the usage with every option, its default and a description, on stdout, exit 0', () => {
    const outputs = [['--help'], ['-h'], ['help'], ['chat', '--help'], ['chat', '-h'], ['chat', '--max-tokens', '3', '--help', 'q']].map((args) => {
      const r = cli(args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      expect(r.stderr, args.join(' ')).toBe('');
      return r.stdout;
    });
    for (const out of outputs) expect(out).toBe(outputs[0]);
    const help = outputs[0]!;
    expect(help).toMatch(/^usage: inf-llava chat \[options\] "question"\n {7}inf-llava --help \| --version\n/);
    // Every option the parser knows (read from its source) is in the help…
    const source = readFileSync(join(ROOT, 'src/cli/main.ts'), 'utf8');
    const known = [...source.matchAll(/case '(--?[a-z-]+)'/g)].map((m) => m[1]!);
    expect(known.length).toBeGreaterThanOrEqual(12);
    for (const flag of new Set([...known, '-h', '--help', '-v', '--version'])) {
      expect(help, `the help lists ${flag}`).toMatch(new RegExp(`^ {2}(-[hv], )?${flag}\\b.{3,}`, 'm'));
    }
    // …with its default.
    for (const dflt of [
      '[the bundled tiny random checkpoint', '[the tower inside --model]', '[--model]', '[the bundled photo, extreme_ironing.jpg]',
      '[auto: the fastest', '[256; 48 with the', '[0: greedy]', '[1: off]', '[0]', '[native]', '[off: the question is plain text]', '[off]',
    ]) {
      expect(help, dflt).toContain(dflt);
    }
    expect(help).toMatch(/tensorflow, wasm, then cpu/);
    expect(help).toMatch(/INF_LLAVA_NO_SHARP=1 +decode the image with the built-in JPEG\/PNG decoders/);
    // Fits a terminal.
    for (const line of help.split('\n')) expect(line.length, line).toBeLessThanOrEqual(100);
  });

  it("--version and -v print package.json's version on stdout, exit 0", () => {
    for (const flag of ['--version', '-v']) {
      const r = cli([flag]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${PKG.version}\n`);
      expect(r.stderr).toBe('');
    }
  });

  it('a missing or unknown command, or a bad option: exit 2, the usage on stderr, nothing on stdout', () => {
    for (const [args, pattern] of [
      [[], /^inf-llava: missing command$/m],
      [['--frobnicate'], /^inf-llava: unknown command "--frobnicate"$/m],
      [['ask', 'q'], /^inf-llava: unknown command "ask"$/m],
      [['chat', '--backend', 'cuda', 'q'], /^inf-llava: unknown backend "cuda"; expected one of cpu, wasm, tensorflow, webgpu \(or auto: the fastest installed\)$/m],
    ] as Array<[string[], RegExp]>) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr).toMatch(/^usage: inf-llava chat \[options\] "question"$/m);
      expect(r.stderr).toMatch(/inf-llava --help lists the options/);
    }
  });
});

describe('inf-llava chat: backend, banner, defaults, image decoders', () => {
  it('without --backend: the fastest installed backend that starts, said in one line on stderr; no tfjs banner', () => {
    const r = cli(['chat', '--max-tokens', '2', '--json', 'What is in the image?']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('backend: '));
    expect(lines, r.stderr).toHaveLength(1);
    const m = /^backend: (tensorflow|wasm|cpu) \((fastest installed|fastest that starts)(; .+)?\)$/.exec(lines[0]!);
    expect(m, lines[0]).not.toBeNull();
    expect(lastJson(r).backend).toBe(m![1]);
    console.log(`auto: ${lines[0]}`);
    expect(r.stderr).not.toMatch(BANNER);
    // --backend auto is the same; a named backend prints no such line.
    const auto = cli(['chat', '--backend', 'auto', '--max-tokens', '1', '--json', 'q']);
    expect(auto.status, auto.stderr).toBe(0);
    expect(auto.stderr).toContain(lines[0]);
    const named = cli(['chat', '--backend', 'wasm', '--max-tokens', '1', '--json', 'q']);
    expect(named.status, named.stderr).toBe(0);
    expect(named.stderr).not.toMatch(/^backend: /m);
    expect(lastJson(named).backend).toBe('wasm');
  });

  it('no "Hi, looks like you are running TensorFlow.js in Node.js" banner on the cpu backend (where tfjs prints it)', () => {
    const r = cli(['chat', '--backend', 'cpu', '--max-tokens', '2', 'What is in the image?']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(BANNER);
    expect(r.stderr).not.toMatch(/={10}/);
    expect(r.stderr).toMatch(/\[cpu\] 2 tokens, stopped: max_tokens/);
  });

  it('the bundled tiny model without --max-tokens: a short answer (48 tokens at most), and stderr says so', () => {
    const r = cli(['chat', '--backend', 'cpu', 'What is in the image?']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/its words are random \(at most 48 tokens unless --max-tokens\)/);
    const m = /\[cpu\] (\d+) tokens, stopped: (\w+)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(48);
    if (m![2] === 'max_tokens') expect(Number(m![1])).toBe(48);
    const j = lastJson(cli(['chat', '--backend', 'cpu', '--json', 'What is in the image?']));
    expect(j.tokens.length).toBeLessThanOrEqual(48);
  });

  describe('the JS image decoders, forced with INF_LLAVA_NO_SHARP=1', () => {
    let dir = '';
    let png = '';
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'inf-llava-cli-'));
      png = join(dir, 'photo.png');
      writeFileSync(png, await sharp(join(ROOT, 'assets/extreme_ironing.jpg')).png().toBuffer());
      writeFileSync(join(dir, 'photo.webp'), await sharp(join(ROOT, 'assets/extreme_ironing.jpg')).webp().toBuffer());
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('answer end to end on the bundled JPEG, and say so on stderr', () => {
      const r = cli(['chat', '--backend', 'cpu', '--max-tokens', '4', '--json', 'What is in the image?'], { INF_LLAVA_NO_SHARP: '1' });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/^image decoder: built-in JPEG decoder \(INF_LLAVA_NO_SHARP is set; JPEG pixels can differ slightly from Pillow's: npm install sharp for exact ones\)$/m);
      expect(lastJson(r).tokens.length).toBeGreaterThan(0);
      // With sharp (the default where it is installed) no such line.
      const withSharp = cli(['chat', '--backend', 'cpu', '--max-tokens', '1', '--json', 'q']);
      expect(withSharp.status, withSharp.stderr).toBe(0);
      expect(withSharp.stderr).not.toMatch(/^image decoder:/m);
    });

    it('a PNG gives the very answer the sharp path gives (the pixels are identical)', () => {
      const args = ['chat', '--backend', 'cpu', '--image', png, '--max-tokens', '6', '--json', 'What is in the image?'];
      const js = cli(args, { INF_LLAVA_NO_SHARP: '1' });
      const viaSharp = cli(args);
      expect(js.status, js.stderr).toBe(0);
      expect(viaSharp.status, viaSharp.stderr).toBe(0);
      expect(js.stderr).toMatch(/^image decoder: built-in PNG decoder/m);
      expect(lastJson(js).tokens).toEqual(lastJson(viaSharp).tokens);
    });

    it('a WebP is refused before the weights load, naming sharp (exit 1)', () => {
      const r = cli(['chat', '--backend', 'cpu', '--image', join(dir, 'photo.webp'), 'q'], { INF_LLAVA_NO_SHARP: '1' });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^inf-llava: --image .*photo\.webp: a WebP image; the built-in decoders \(used because INF_LLAVA_NO_SHARP is set\) read JPEG and PNG only\. For other formats install the optional peer dependency 'sharp': npm install sharp$/m);
      expect(r.stderr).not.toMatch(/loading weights/);
    });
  });
});

describe('in a project with only tfjs-core and tfjs-backend-cpu (no tfjs-node, no wasm, no sharp)', () => {
  let project = '';
  let bin = '';
  const nm = (p: string) => join(ROOT, 'node_modules', p);
  const link = (name: string) => {
    const to = join(project, 'node_modules', name);
    mkdirSync(dirname(to), { recursive: true });
    symlinkSync(nm(name), to, 'dir');
  };

  beforeAll(() => {
    project = mkdtempSync(join(tmpdir(), 'inf-llava-fresh-'));
    const pkg = join(project, 'node_modules', 'inf-llava');
    mkdirSync(pkg, { recursive: true });
    for (const f of ['dist', 'assets', 'package.json']) cpSync(join(ROOT, f), join(pkg, f), { recursive: true });
    // inf-llava's dependencies and the two packages the user installed; nothing else resolves.
    const deps = Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
    for (const name of [...deps, '@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu']) link(name);
    bin = join(pkg, 'dist', 'cli.js');
  });
  afterAll(() => rmSync(project, { recursive: true, force: true }));

  it('`inf-llava chat "…"` answers on cpu, says why (and how to get a faster backend), decodes without sharp, no banner', () => {
    const r = run(bin, ['chat', '--max-tokens', '3', 'What is unusual about this image?'], {}, project);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^backend: cpu \(fastest installed; tensorflow, wasm: not installed — npm install @tensorflow\/tfjs-backend-wasm for a faster one\)$/m);
    expect(r.stderr).toMatch(/^image decoder: built-in JPEG decoder \(sharp is not installed; /m);
    expect(r.stderr).not.toMatch(BANNER);
    expect(r.stderr).toMatch(/\[cpu\] 3 tokens, stopped: max_tokens/);
  });

  it('--backend wasm (not installed): exit 1, how to get it, and the alternatives', () => {
    const r = run(bin, ['chat', '--backend', 'wasm', 'q'], {}, project);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^inf-llava: backend 'wasm' could not start: not installed \(Cannot find package '@tensorflow\/tfjs-backend-wasm'.*\)\. To get it: npm install @tensorflow\/tfjs-backend-wasm; or choose another backend \(--backend tensorflow, --backend cpu\), or leave --backend out to use the fastest installed$/m);
  });

  it('tfjs-node installed without its native binding: the auto line and --backend tensorflow say to build or download the binding', () => {
    // tfjs-node's own files, without lib/ (the binding its install script puts there).
    const own = join(project, 'node_modules', '@tensorflow', 'tfjs-node');
    mkdirSync(own, { recursive: true });
    for (const f of ['dist', 'package.json']) cpSync(join(nm('@tensorflow/tfjs-node'), f), join(own, f), { recursive: true });
    const deps = Object.keys((JSON.parse(readFileSync(join(own, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
    for (const name of deps) if (existsSync(nm(name)) && !existsSync(join(project, 'node_modules', name))) link(name);
    try {
      const auto = run(bin, ['chat', '--max-tokens', '1', '--json', 'q'], {}, project);
      expect(auto.status, auto.stderr).toBe(0);
      expect(auto.stderr).toMatch(
        /^backend: cpu \(fastest that starts; tensorflow: installed but failed to start \(The Node\.js native addon module \(tfjs_binding\.node\) can not be found at path: .*\); to fix it: its native binding .* npm rebuild @tensorflow\/tfjs-node.*; wasm: not installed — npm install @tensorflow\/tfjs-backend-wasm for a faster one\)$/m,
      );
      const forced = run(bin, ['chat', '--backend', 'tensorflow', 'q'], {}, project);
      expect(forced.status).toBe(1);
      expect(forced.stderr).toMatch(/^inf-llava: backend 'tensorflow' could not start: The Node\.js native addon module \(tfjs_binding\.node\) can not be found .*To fix it: its native binding \(tfjs_binding\.node, with libtensorflow\) is missing or does not load: run its install script, npm rebuild @tensorflow\/tfjs-node, .*; or choose another backend \(--backend wasm, --backend cpu\)/m);
      expect(forced.stderr).not.toMatch(/To get it: npm install @tensorflow\/tfjs-node/);
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  });
});

describe('useFastestBackend (inf-llava/node), in process', () => {
  it('tries tensorflow, wasm, cpu; returns the one it started, the ones skipped and the summary line', async () => {
    expect(AUTO_BACKENDS).toEqual(['tensorflow', 'wasm', 'cpu']);
    const r = await useFastestBackend();
    expect(tf.getBackend()).toBe(r.backend);
    expect(AUTO_BACKENDS.indexOf(r.backend as (typeof AUTO_BACKENDS)[number])).toBe(r.skipped.length);
    expect(r.skipped.map((e) => e.backend)).toEqual(AUTO_BACKENDS.slice(0, r.skipped.length));
    for (const e of r.skipped) expect(e).toBeInstanceOf(BackendUnavailableError);
    expect(r.summary.startsWith(`${r.backend} (fastest `)).toBe(true);
    const one = await useFastestBackend(['cpu']);
    expect(one).toEqual({ backend: 'cpu', skipped: [], summary: 'cpu (the only candidate)' });
    await expect(useFastestBackend([])).rejects.toThrow(/no candidate backends/);
  });

  it("useBackend's errors say whether the backend is installed", async () => {
    await expect(useBackend('cuda' as never)).rejects.toThrow(/^useBackend: unknown backend "cuda"/);
    const e = new BackendUnavailableError('wasm', false, 'not installed (x)', 'npm install @tensorflow/tfjs-backend-wasm');
    expect(e.message).toBe("useBackend: backend 'wasm' could not start: not installed (x). To get it: npm install @tensorflow/tfjs-backend-wasm");
    const broken = new BackendUnavailableError('tensorflow', true, 'no binding', 'npm rebuild @tensorflow/tfjs-node');
    expect(broken.message).toBe("useBackend: backend 'tensorflow' could not start: no binding. To fix it: npm rebuild @tensorflow/tfjs-node; or use another backend");
    expect(broken.name).toBe('BackendUnavailableError');
  });
});
