/**
 * Real Chromium for the browser tests: Debian's `chromium` driven by playwright-core (never a
 * downloaded browser), WebGPU on SwiftShader (../shared/docs/ENVIRONMENT.md, "Browser"), one
 * browser per test process with a fresh user-data directory. Pages fail loudly: every console
 * error, uncaught exception, failed request and HTTP error response is collected, and
 * `expectNoPageErrors` fails the test on any.
 *
 * A browser that cannot start is skipped with a printed notice, and fails the run when CI=true
 * (as test/backends.ts does for backends).
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The flags that give headless Chromium WebGPU on SwiftShader, and keep it off the network. */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--disable-vulkan-surface',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
];

const ROOT = resolve(import.meta.dirname, '..', '..');

let context: Promise<BrowserContext> | undefined;
let userDataDir: string | undefined;

/** Null when Chromium and playwright-core are there, else why not. */
export async function chromiumUnavailable(): Promise<string | null> {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium libvulkan1; or set CHROMIUM_PATH)`;
  try {
    await import('playwright-core');
  } catch (e) {
    return `playwright-core cannot be imported (npm ci installs it): ${(e as Error).message}`;
  }
  return null;
}

/** The one browser of this process (launched on first use). */
export function browser(): Promise<BrowserContext> {
  context ??= (async () => {
    const { chromium } = await import('playwright-core');
    userDataDir = mkdtempSync(join(tmpdir(), 'inf-llava-chromium-'));
    return chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
    });
  })();
  return context;
}

export async function closeBrowser(): Promise<void> {
  if (!context) return;
  const c = context;
  context = undefined;
  await (await c).close().catch(() => undefined);
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
}

/** A page of the shared browser, with everything that went wrong in it collected in `errors`. */
export interface CheckedPage {
  page: Page;
  errors: string[];
  /** Console messages, all types, for reports. */
  console: string[];
  /**
   * Waits until `predicate` (run in the page) is truthy; fails at once, with the errors, when the
   * page reports one.
   */
  waitFor(predicate: string | (() => unknown), timeoutMs?: number): Promise<void>;
}

/**
 * Files a checkpoint folder may lack, which the loaders look for: a `404` for one of these (and
 * the browser's console message about it) is expected, not an error.
 */
export const OPTIONAL_CHECKPOINT_FILES = /\/(chat_template\.jinja|model\.safetensors\.index\.json|generation_config\.json|tokenizer_config\.json|special_tokens_map\.json|preprocessor_config\.json)$/;

/**
 * Opens `url` in the shared browser. Errors: console errors, uncaught exceptions, crashes, failed
 * requests (a request the page itself aborted, `net::ERR_ABORTED`, is not one) and responses with
 * status >= 400, except `404`s for `allow404` (default: {@link OPTIONAL_CHECKPOINT_FILES}).
 */
export async function openPage(url: string, opts: { allow404?: RegExp } = {}): Promise<CheckedPage> {
  const allow404 = opts.allow404 ?? OPTIONAL_CHECKPOINT_FILES;
  const expected404 = (u: string) => allow404.test(new URL(u).pathname);
  const page = await (await browser()).newPage();
  const errors: string[] = [];
  const log: string[] = [];
  let onError: (() => void) | undefined;
  const error = (e: string) => {
    errors.push(e);
    onError?.();
  };
  page.on('console', (m) => {
    const where = m.location().url;
    log.push(`${m.type()}: ${m.text()}${where ? ` (${where})` : ''}`);
    if (m.type() !== 'error') return;
    // The browser's own line for an expected 404 (its text has no URL; its location does).
    if (/^Failed to load resource: .*404/.test(m.text()) && where && expected404(where)) return;
    error(`console.error: ${m.text()}${where ? ` (${where})` : ''}`);
  });
  page.on('pageerror', (e) => error(`uncaught: ${e.stack ?? e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? '';
    if (why === 'net::ERR_ABORTED') log.push(`aborted by the page: ${r.url()}`);
    else error(`request failed: ${r.url()} (${why})`);
  });
  page.on('response', (r) => {
    if (r.status() === 404 && expected404(r.url())) log.push(`expected 404: ${r.url()}`);
    else if (r.status() >= 400) error(`HTTP ${r.status()}: ${r.url()}`);
  });
  page.on('crash', () => error('the page crashed'));
  const waitFor = async (predicate: string | (() => unknown), timeoutMs = 120_000): Promise<void> => {
    const failed = new Promise<never>((_, reject) => {
      onError = () => reject(new Error(`the page reported errors:\n${errors.join('\n')}`));
      if (errors.length) onError();
    });
    try {
      await Promise.race([page.waitForFunction(predicate, undefined, { timeout: timeoutMs }), failed]);
    } finally {
      onError = undefined;
    }
  };
  await page.goto(url);
  return { page, errors, console: log, waitFor };
}

/** Fails with every error the page reported (console errors, exceptions, failed or 4xx/5xx requests). */
export function expectNoPageErrors(p: CheckedPage, what = 'the page'): void {
  expect(p.errors, `${what} reported errors`).toEqual([]);
}

/**
 * `describe(title, suite)` when Chromium can start; else a skipped suite and a notice, or (CI=true)
 * one failing test that says why.
 */
export async function describeInChromium(title: string, suite: () => void): Promise<void> {
  const reason = await chromiumUnavailable();
  if (!reason) {
    describe(title, suite);
    return;
  }
  if (process.env.CI === 'true') {
    describe(title, () => {
      it('Chromium is available (required in CI)', () => {
        throw new Error(`cannot run the browser tests: ${reason}`);
      });
    });
  } else {
    console.warn(`NOTICE: skipping "${title}": ${reason}`);
    describe.skip(title, suite);
  }
}

/** Runs `vite build --config <config>` (in a child process); throws with its output on failure. */
export function viteBuild(config: string, env: Record<string, string> = {}): void {
  const vite = join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js');
  const r = spawnSync(process.execPath, [vite, 'build', '--config', config], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 300_000 });
  if (r.status !== 0) throw new Error(`vite build --config ${config} failed (status ${r.status}):\n${r.stdout}\n${r.stderr}`);
}

/** A free TCP port on 127.0.0.1. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', () => ok()));
  const { port } = s.address() as { port: number };
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

/** `vite preview --config <config>` (what the README suggests) on 127.0.0.1; stopped by `close`. */
export async function vitePreview(config: string): Promise<{ url: string; close(): Promise<void> }> {
  const port = await freePort();
  const vite = join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js');
  const child = spawn(process.execPath, [vite, 'preview', '--config', config, '--host', '127.0.0.1', '--port', String(port), '--strictPort'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const url = `http://127.0.0.1:${port}/`;
  const close = async () => {
    if (child.exitCode === null) {
      child.kill();
      await once(child, 'exit');
    }
  };
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`vite preview exited (${child.exitCode}):\n${output}`);
    try {
      if ((await fetch(url)).ok) return { url, close };
    } catch {
      // not listening yet
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  await close();
  throw new Error(`vite preview did not answer at ${url} within 30 s:\n${output}`);
}
