// The package as a new user gets it: `npm pack`, a fresh project, the README's install line,
// then the README's first two TypeScript blocks, its command-line block (+ `--version`), a
// type check of those blocks and of `inf-llava/node` under `moduleResolution: node10`, and
// finally the README's Training section (its install line and its block: tf.grad and Adam
// through spatialEmbed). Everything is read out of README.md by position or section, so a
// README change that breaks the code fails here.
//
// Packs the current dist/ (npm test builds first; alone: `npm run build && npm run test:pack`).
// Needs the npm registry (or a cache holding the README's packages): the installs use the
// user's npm cache with prefer-offline. Without a registry, and not in CI, it skips with a notice.
// INF_LLAVA_PACK_KEEP=1 keeps the temporary project and prints its path.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const TSC = join(ROOT, 'node_modules', '.bin', 'tsc');
const CI = process.env.CI === 'true';

// ---- README.md, read the way a user reads it -------------------------------------------------

interface Fence { lang: string; body: string; section: string }

/** The fenced code blocks of a Markdown text, each with its language and the `##` section it is in. */
function fences(md: string): Fence[] {
  const out: Fence[] = [];
  let section = '';
  let open: { lang: string; lines: string[] } | undefined;
  for (const line of md.split('\n')) {
    if (open) {
      if (/^```\s*$/.test(line)) {
        out.push({ lang: open.lang, body: `${open.lines.join('\n')}\n`, section });
        open = undefined;
      } else open.lines.push(line);
    } else if (line.startsWith('```')) open = { lang: line.slice(3).trim(), lines: [] };
    else if (/^## /.test(line)) section = line.slice(3).trim();
  }
  return out;
}

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const FENCES = fences(README);
const tsBlocks = FENCES.filter((f) => f.lang === 'ts');
const shLines = (f: Fence | undefined) => (f?.body ?? '').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const npmInstallLine = (f: Fence | undefined) => shLines(f).find((l) => l.startsWith('npm install '));
/** The first `sh` block's install line: what a user types first. */
const INSTALL = npmInstallLine(FENCES.find((f) => f.lang === 'sh'));
/** The command-line section's commands. */
const CLI_LINES = shLines(FENCES.find((f) => f.lang === 'sh' && /command line/i.test(f.section)));
const TRAIN_INSTALL = npmInstallLine(FENCES.find((f) => f.lang === 'sh' && f.section === 'Training'));
const TRAIN_BLOCK = FENCES.find((f) => f.lang === 'ts' && f.section === 'Training');

// ---- Child processes: the environment of a user's shell. Under `npm test`, npm exports this
// repository's settings: npm_config_local_prefix would point npm at this repository, and
// npm_config_ignore_scripts (.npmrc) would change the install. The user's own npm settings
// (registry, cache, proxy…) stay. -------------------------------------------------------------

const PROJECT_NPM_ENV = /^(npm_package_|npm_lifecycle_|npm_command$|npm_config_local_prefix$|npm_config_ignore_scripts$|INIT_CWD$|VITEST)/i;
const ENV: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !PROJECT_NPM_ENV.test(k)));
ENV.npm_config_prefer_offline = 'true'; // the user's npm cache first (CI has run `npm ci`); the registry for the rest
ENV.npm_config_update_notifier = 'false';

interface Ran { code: number | null; stdout: string; stderr: string; seconds: number }
const timings: [string, number][] = [];

function sh(label: string, cmd: string, args: string[], cwd: string, timeoutMs = 240_000): Ran {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd, env: ENV, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  const ran = { code: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}`, seconds: (performance.now() - t0) / 1000 };
  timings.push([label, ran.seconds]);
  console.log(`[pack] ${label}: exit ${ran.code} in ${ran.seconds.toFixed(1)} s`);
  return ran;
}

const tail = (s: string, n = 3000) => (s.length > n ? `…${s.slice(-n)}` : s);
function ok(r: Ran, what: string): Ran {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}\n--- stdout\n${tail(r.stdout)}\n--- stderr\n${tail(r.stderr)}`);
  return r;
}

/** A README install line with the packed tarball in place of `inf-llava`, run in the project. */
function install(label: string, line: string, tarball: string, cwd: string): Ran {
  const words = line.split(/\s+/).map((w) => (w === 'inf-llava' ? tarball : w));
  expect(words.slice(0, 2)).toEqual(['npm', 'install']);
  return sh(label, 'npm', [...words.slice(1), '--no-audit', '--no-fund'], cwd, 300_000);
}

/** Installed packages that have an install-time script (npm runs node-gyp for a binding.gyp too). */
function withInstallScripts(nodeModules: string): string[] {
  const found: string[] = [];
  const visit = (dir: string) => {
    for (const name of existsSync(dir) ? readdirSync(dir) : []) {
      if (name.startsWith('.')) continue;
      if (name.startsWith('@')) { visit(join(dir, name)); continue; }
      const pkgDir = join(dir, name);
      const pj = join(pkgDir, 'package.json');
      if (existsSync(pj)) {
        const scripts = (JSON.parse(readFileSync(pj, 'utf8')) as { scripts?: Record<string, string> }).scripts ?? {};
        const hooks = ['preinstall', 'install', 'postinstall'].filter((k) => scripts[k]);
        if (hooks.length || existsSync(join(pkgDir, 'binding.gyp'))) found.push(`${relative(nodeModules, pkgDir)} (${hooks.join(', ') || 'binding.gyp'})`);
      }
      visit(join(pkgDir, 'node_modules'));
    }
  };
  visit(nodeModules);
  return found;
}

const NETWORK = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|network|request to https?:\/\/\S+ failed/i;

// ---- The test ----------------------------------------------------------------------------------

describe('the packed package, used as the README says', () => {
  let dir = '';
  let project = '';
  let tarball = '';
  let offline = '';

  beforeAll(() => {
    for (const f of ['dist/index.js', 'dist/index.cjs', 'dist/node.js', 'dist/node.d.ts', 'dist/cli.js']) {
      if (!existsSync(join(ROOT, f))) throw new Error(`${f} missing: run npm run build first (npm test does)`);
    }
    expect(INSTALL, 'README: the first sh block has an `npm install` line').toMatch(/^npm install inf-llava(\s|$)/);
    expect(tsBlocks.length, 'README: at least two ts blocks').toBeGreaterThanOrEqual(2);

    dir = mkdtempSync(join(tmpdir(), 'inf-llava-pack-'));
    project = join(dir, 'project');
    // --ignore-scripts: pack the dist/ that is there (prepack would rebuild it).
    const packed = ok(sh('npm pack', 'npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], ROOT, 120_000), 'npm pack');
    const info = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    tarball = join(dir, info[0]!.filename);
    const files = info[0]!.files.map((f) => f.path);
    for (const f of ['dist/index.d.ts', 'dist/node.d.ts', 'dist/cli.js', 'assets/tiny-inf-llava/config.json', 'assets/extreme_ironing.jpg', 'README.md', 'LICENSE']) {
      expect(files, `the tarball holds ${f}`).toContain(f);
    }

    ok(sh('mkdir + npm init -y', 'bash', ['-c', `mkdir -p '${project}' && cd '${project}' && npm init -y >/dev/null && npm pkg set type=module`], dir), 'npm init');
    const r = install(`README install line: ${INSTALL}`, INSTALL!, tarball, project);
    if (r.code !== 0 && !CI && NETWORK.test(r.stderr)) {
      offline = `npm could not reach the registry (not CI, so skipped): ${tail(r.stderr, 400)}`;
      console.warn(`[pack] SKIPPED: ${offline}`);
      return;
    }
    ok(r, `${INSTALL} (with the tarball)`);
    expect(existsSync(join(project, 'node_modules', 'inf-llava', 'dist', 'index.js'))).toBe(true);
    // The README says the line needs no install scripts (works with --ignore-scripts): none is there to run.
    expect(withInstallScripts(join(project, 'node_modules'))).toEqual([]);
  }, 420_000);

  afterAll(() => {
    const total = timings.reduce((s, [, t]) => s + t, 0);
    console.log(`[pack] timings:\n${timings.map(([l, t]) => `  ${t.toFixed(1).padStart(6)} s  ${l}`).join('\n')}\n  ${total.toFixed(1).padStart(6)} s  total`);
    if (!dir) return;
    if (process.env.INF_LLAVA_PACK_KEEP === '1') console.log(`[pack] kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a README block as a user would: a .ts file in the project, run with tsx (not type-checked here). */
  function runBlock(name: string, body: string): Ran {
    writeFileSync(join(project, `${name}.ts`), body);
    return sh(`tsx ${name}.ts`, TSX, [`${name}.ts`], project, 180_000);
  }

  it("README block 1 (the DCM primitives) runs and leaves no tensor", (ctx) => {
    if (offline) return ctx.skip(offline);
    const r = ok(runBlock('readme-1', tsBlocks[0]!.body), 'README ts block 1');
    // The block ends by printing tf.memory().numTensors.
    expect(r.stdout.trim().split('\n').pop()).toBe('0');
  });

  it('README block 2 (loadInfLlava(...).generate on the bundled model) runs', (ctx) => {
    if (offline) return ctx.skip(offline);
    expect(tsBlocks[1]!.body).toMatch(/loadInfLlava[\s\S]*\.generate\(/);
    const r = runBlock('readme-2', tsBlocks[1]!.body);
    ok(r, 'README ts block 2');
    expect(r.stdout).toMatch(/^backend: wasm\b/m); // the one backend the README's install line brings
    expect(r.stdout).toMatch(/\d+ tokens, stopped: (eos|max_tokens|context)/);
  });

  it('the README blocks type-check, and inf-llava/node has types under moduleResolution node10', (ctx) => {
    if (offline) return ctx.skip(offline);
    const common = ['--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--lib', 'es2022,dom', '--typeRoots', join(ROOT, 'node_modules', '@types'), '--types', 'node'];
    // ESM user (nodenext): blocks 1 and 2 as written (each a module: they import).
    writeFileSync(join(project, 'readme-1.ts'), tsBlocks[0]!.body);
    writeFileSync(join(project, 'readme-2.ts'), tsBlocks[1]!.body);
    ok(sh('tsc nodenext: README blocks 1, 2', TSC, [...common, '--module', 'nodenext', '--moduleResolution', 'nodenext', 'readme-1.ts', 'readme-2.ts'], project), 'tsc (nodenext) on README blocks 1 and 2');
    // A CommonJS project on TypeScript's legacy resolution (no exports map): typesVersions.
    writeFileSync(
      join(project, 'node10.ts'),
      "import { useBackend, BACKENDS, type BackendName } from 'inf-llava/node';\nimport { localCrop, loadInfLlava } from 'inf-llava';\n" +
        "const b: BackendName = BACKENDS[1];\nexport const started: Promise<void> = useBackend(b);\nexport const fns = [localCrop, loadInfLlava];\n",
    );
    ok(sh('tsc node10: inf-llava/node', TSC, [...common, '--module', 'commonjs', '--moduleResolution', 'node10', 'node10.ts'], project), 'tsc --moduleResolution node10');
  });

  it('the command line: the README lines (chat on the bundled model, --help) and --version', (ctx) => {
    if (offline) return ctx.skip(offline);
    const chat = CLI_LINES.find((l) => /^npx inf-llava chat "[^"]+"$/.test(l));
    expect(chat, 'README: the command-line section has `npx inf-llava chat "question"`').toBeDefined();
    expect(CLI_LINES).toContain('npx inf-llava --help');
    for (const line of [...CLI_LINES, 'npx inf-llava --version']) {
      const r = ok(sh(line, 'bash', ['-c', line], project, 180_000), line);
      if (line === chat) {
        expect(r.stdout.trim().length, 'an answer on stdout').toBeGreaterThan(0);
        // The README's install line has wasm as the one backend: the CLI must find and use it.
        expect(`${r.stdout}\n${r.stderr}`, 'a backend: line').toMatch(/(^|\s)backend:\s*wasm\b/m);
      } else if (line.endsWith('--version')) {
        expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
      } else {
        expect(r.stdout).toMatch(/inf-llava chat/);
      }
    }
  });

  it('Training: the README install line, then its block (tf.grad and Adam through spatialEmbed)', (ctx) => {
    if (offline) return ctx.skip(offline);
    expect(TRAIN_INSTALL, 'README: Training has an `npm install` line').toBeDefined();
    expect(TRAIN_BLOCK?.body, 'README: Training has a ts block using tf.grad through spatialEmbed').toMatch(/tf\.grad\([\s\S]*spatialEmbed/);
    ok(install(`README training line: ${TRAIN_INSTALL}`, TRAIN_INSTALL!, tarball, project), TRAIN_INSTALL!);
    const r = ok(runBlock('readme-training', TRAIN_BLOCK!.body), 'README Training block');
    const losses = [...r.stdout.matchAll(/loss (\d+\.\d+)/g)].map((m) => Number(m[1]));
    expect(losses.length).toBeGreaterThanOrEqual(2);
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    ok(sh('tsc nodenext: README training block', TSC, ['--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--lib', 'es2022,dom', '--typeRoots', join(ROOT, 'node_modules', '@types'), '--types', 'node', '--module', 'nodenext', '--moduleResolution', 'nodenext', 'readme-training.ts'], project), 'tsc on the Training block');
  }, 420_000);
});

describe('README links work from the npm page', () => {
  it('has no relative links; its repository links name files that exist, and its # links name headings', () => {
    const links = [...README.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(10);
    const slug = (h: string) => h.toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-');
    const anchors = (md: string) => new Set([...md.matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1]!.trim())));
    const own = anchors(README);
    const REPO = 'https://github.com/inf-llava/inf-llava/';
    for (const link of links) {
      if (link.startsWith('#')) {
        expect(own.has(link.slice(1)), `README anchor ${link}`).toBe(true);
        continue;
      }
      expect(link, 'absolute (the npm page cannot follow relative links)').toMatch(/^https:\/\//);
      const m = /^https:\/\/github\.com\/inf-llava\/inf-llava\/(?:blob|tree)\/main\/([^#]+)(?:#(.+))?$/.exec(link);
      if (!m) {
        if (link.startsWith(REPO)) expect(link).toBe(`${REPO}issues`);
        continue;
      }
      const file = join(ROOT, m[1]!);
      expect(existsSync(file), `${link}: ${m[1]} exists in the repository`).toBe(true);
      if (m[2]) expect(anchors(readFileSync(file, 'utf8')).has(m[2]), `${link}: heading #${m[2]}`).toBe(true);
    }
  });
});
