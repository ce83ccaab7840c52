/**
 * The backend matrix, like ggml's test-backend-ops: every suite registers its cases once per
 * backend and compares each with the same oracle. A backend that cannot start is skipped
 * with a printed notice locally, and fails the run when CI=true (all four are required there).
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

function wanted(): BackendName[] {
  const only = process.env.INF_LLAVA_BACKENDS?.split(',').map((s) => s.trim()).filter(Boolean);
  return only ? BACKENDS.filter((b) => only.includes(b)) : [...BACKENDS];
}

/**
 * Registers `suite` once per backend inside `describe('[backend] title')`. Each test runs with
 * that backend active and asserts that `tf.memory().numTensors` is back where it started.
 */
export async function describeEachBackend(title: string, suite: (backend: BackendName) => void): Promise<void> {
  const status = await backendStatus();
  for (const name of wanted()) {
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
