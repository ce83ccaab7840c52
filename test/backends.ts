/**
 * The backend matrix, like ggml's test-backend-ops: every suite registers its cases once per
 * backend and compares each with the same oracle. A backend that cannot start is skipped
 * with a printed notice locally, and fails the run when CI=true (all four are required there).
 * INF_LLAVA_BACKENDS=cpu,wasm (a local convenience) runs the suites on those backends only: the
 * others' tests are registered as skipped, with a notice; under CI=true it is refused (see `leftOut`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

export { BACKENDS, type BackendName } from '../src/backends/node.js';
import { BACKENDS, useBackend, type BackendName } from '../src/backends/node.js';

async function probe(name: BackendName): Promise<string | null> {
  try {
    await useBackend(name);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

let probed: Promise<Map<BackendName, string | null>> | undefined;
/** Starts each backend once per test process; value: null when usable, else why not. */
export function backendStatus(): Promise<Map<BackendName, string | null>> {
  probed ??= (async () => {
    const status = new Map<BackendName, string | null>();
    for (const name of BACKENDS) status.set(name, await probe(name));
    return status;
  })();
  return probed;
}

let filterReported = false;
/**
 * The backends INF_LLAVA_BACKENDS leaves out (unknown names are an error); none when it is unset.
 * Under CI=true the filter would drop required backends, so it is refused: nothing is left out,
 * and one failing test per file says why.
 */
function leftOut(): BackendName[] {
  const raw = process.env.INF_LLAVA_BACKENDS?.trim();
  if (!raw) return [];
  const only = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = only.filter((b) => !(BACKENDS as readonly string[]).includes(b));
  if (unknown.length) throw new Error(`INF_LLAVA_BACKENDS=${raw}: unknown backend(s) ${unknown.join(', ')} (known: ${BACKENDS.join(', ')})`);
  const first = !filterReported;
  filterReported = true;
  if (process.env.CI === 'true') {
    if (first) {
      describe('INF_LLAVA_BACKENDS', () => {
        it('is not set under CI=true (CI runs every suite on all four backends)', () => {
          throw new Error(`INF_LLAVA_BACKENDS=${raw} is refused under CI=true: it would leave out ${BACKENDS.filter((b) => !only.includes(b)).join(', ') || 'no backend'}; unset it (all four backends were registered anyway)`);
        });
      });
    }
    return [];
  }
  const left = BACKENDS.filter((b) => !only.includes(b));
  if (first && left.length) console.warn(`NOTICE: INF_LLAVA_BACKENDS=${raw}: skipping the suites on ${left.join(', ')}`);
  return left;
}

/** Options of {@link describeEachBackend}. */
export interface EachBackendOptions {
  /**
   * Register the suite on these backends only: for cases that check nothing on the others (a
   * test that cannot fail there is not registered there, so it is not counted as a pass).
   */
  only?: readonly BackendName[];
}

/**
 * Registers `suite` once per backend inside `describe('[backend] title')`. Each test runs with
 * that backend active and asserts that `tf.memory().numTensors` is back where it started.
 */
export async function describeEachBackend(title: string, suite: (backend: BackendName) => void, options: EachBackendOptions = {}): Promise<void> {
  const status = await backendStatus();
  const skipped = leftOut();
  for (const name of BACKENDS) {
    if (options.only && !options.only.includes(name)) continue;
    if (skipped.includes(name)) {
      describe.skip(`[${name}] ${title} (left out by INF_LLAVA_BACKENDS)`, () => suite(name));
      continue;
    }
    const reason = status.get(name);
    if (reason) {
      if (process.env.CI === 'true') {
        describe(`[${name}] ${title}`, () => {
          it('backend is available (all four are required in CI)', () => {
            throw new Error(`backend '${name}' could not start: ${reason}`);
          });
        });
      } else {
        console.warn(`NOTICE: skipping "${title}" on '${name}': ${reason}`);
        describe.skip(`[${name}] ${title}`, () => suite(name));
      }
      continue;
    }
    describe(`[${name}] ${title}`, () => {
      let before = 0;
      beforeAll(async () => {
        await tf.setBackend(name);
        await tf.ready();
        if (name === 'webgpu') expect(tf.env().getBool('WEBGPU_CPU_FORWARD')).toBe(false);
      });
      beforeEach(() => {
        expect(tf.getBackend()).toBe(name);
        before = tf.memory().numTensors;
      });
      afterEach(() => {
        expect(tf.memory().numTensors, 'tensors leaked by this test').toBe(before);
      });
      suite(name);
    });
  }
}

/** Runs `op` and asserts it created exactly `expected` new live tensors (its outputs). */
export function expectTensorsCreated<T>(op: () => T, expected = 1): T {
  const before = tf.memory().numTensors;
  const out = op();
  expect(tf.memory().numTensors - before, 'live tensors created by the call').toBe(expected);
  return out;
}

/** Asserts `op` throws an error whose message matches `pattern`, leaving no tensor behind. */
export function expectThrowsClean(op: () => unknown, pattern: RegExp): void {
  const before = tf.memory().numTensors;
  expect(op).toThrow(pattern);
  expect(tf.memory().numTensors, 'tensors left behind by a failed call').toBe(before);
}
