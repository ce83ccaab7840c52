/** The device: the WebGPU adapter's report (info, features, limits), versions, and the webgpu buffer manager's bytes. */
import * as tf from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { join } from 'node:path';
import type { BackendName } from '../../src/backends/node.js';
import { log } from './options.js';

export interface Adapter {
  info: Record<string, unknown>;
  features: string[];
  deviceFeatures: string[];
  limits: Record<string, number>;
}

export async function adapterInfo(): Promise<Adapter | null> {
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter: (o: unknown) => Promise<unknown> } } }).navigator?.gpu;
  if (!gpu) return null;
  const a = (await gpu.requestAdapter({ powerPreference: 'high-performance' })) as {
    info?: Record<string, unknown>;
    features: Iterable<string>;
    limits: Record<string, number>;
  } | null;
  if (!a) return null;
  const info: Record<string, unknown> = {};
  for (const k of ['vendor', 'architecture', 'device', 'description', 'subgroupMinSize', 'subgroupMaxSize', 'isFallbackAdapter']) info[k] = a.info?.[k];
  const limits: Record<string, number> = {};
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupsPerDimension']) limits[k] = a.limits[k]!;
  const dev = (tf.backend() as { device?: { features?: Iterable<string> } }).device;
  return { info, features: [...a.features].sort(), deviceFeatures: dev?.features ? [...dev.features].sort() : [], limits };
}

export function logAdapter(adapter: Adapter): void {
  log(`adapter: ${JSON.stringify(adapter.info)}`);
  log(`  features: ${adapter.features.join(', ')}`);
  log(`  device features (tfjs): ${adapter.deviceFeatures.join(', ')}`);
  log(`  limits: ${JSON.stringify(adapter.limits)}`);
}

const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');

/** The results' name: the adapter's device string (e.g. `nvidia-h200`), else the backend and the CPU. */
export function cardName(adapter: Adapter | null, backend: BackendName): string {
  return adapter ? slug(String(adapter.info.device || `${adapter.info.vendor}-${adapter.info.architecture}`)) : slug(`${backend}-${cpus()[0]?.model ?? 'cpu'}`);
}

/** The installed version of a package, as resolved from the working directory (the bundle's node_modules on the GPU machine). */
export function packageVersion(name: string): string | undefined {
  try {
    return (createRequire(join(process.cwd(), 'x.js'))(`${name}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

/** Destroys the webgpu buffer manager's free (pooled) buffers, so one format's leftovers do not count against the next. */
export function releasePooledGpuBuffers(): void {
  const bm = (tf.backend() as unknown as { bufferManager?: { freeBuffers?: Map<string, Array<{ size: number; destroy: () => void }>>; numBytesAllocated: number; numFreeBuffers: number } }).bufferManager;
  if (!bm?.freeBuffers) return;
  for (const list of bm.freeBuffers.values()) {
    for (const b of list) {
      b.destroy();
      bm.numBytesAllocated -= b.size;
    }
    list.length = 0;
  }
  bm.numFreeBuffers = 0;
}

export const gpuAllocatedBytes = () => (tf.memory() as { numBytesAllocatedInGPU?: number }).numBytesAllocatedInGPU ?? null;
