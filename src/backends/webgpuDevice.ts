/**
 * tfjs's `webgpu` backend on a GPUDevice requested here, so that the device has the features our
 * kernels use: tfjs-backend-webgpu 4.22 requests only `timestamp-query` and `bgra8unorm-storage`,
 * never `subgroups`. {@link registerWebGPUBackend} replaces tfjs's backend factory with one that
 * does what tfjs's does (same adapter options, same required limits and features, then
 * `new WebGPUBackend(device, adapterInfo)`) and adds `subgroups` when the adapter offers it.
 *
 * WGSL wants `enable subgroups;` before every declaration, but tfjs assembles a program's module
 * itself (its declarations first, the program's code after them); the device made here therefore
 * hoists `enable …;` directive lines to the top of every shader module it compiles (tfjs's own
 * shaders have none, and a directive anywhere else is invalid WGSL anyway). Likewise a line
 * `@subgroup_size(N)` (an entry-point attribute; tfjs writes the entry point) is moved onto the
 * `@compute` entry point ({@link placeSubgroupSize}). Kernels use subgroup operations only on such
 * a device ({@link webgpuSubgroupKernels}); where the adapter has `subgroup-size-control` it is
 * requested too, so that tests can run a kernel at each subgroup size the adapter offers
 * ({@link webgpuSubgroupSizes}).
 *
 * Browser-safe: no Node imports, and no import of `@tensorflow/tfjs-backend-webgpu` (an optional
 * peer: a bundle of an app without it must still build); the caller passes its `WebGPUBackend`
 * class. Called by `useBackend('webgpu')` (`inf-llava/node`); in a browser:
 *
 *   import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
 *   await registerWebGPUBackend(WebGPUBackend);
 *   await tf.setBackend('webgpu');
 */
import { engine, env, findBackendFactory, registerBackend, removeBackend } from '@tensorflow/tfjs-core';

/** The parts of the WebGPU API used here (structural: no dependency on @webgpu/types). */
interface GPUSupportedLike {
  has(name: string): boolean;
}
interface ShaderModuleDescriptorLike {
  code: string;
  [key: string]: unknown;
}
interface GPUDeviceLike {
  features: GPUSupportedLike;
  createShaderModule(desc: ShaderModuleDescriptorLike): unknown;
}
interface AdapterInfoLike {
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
}
interface GPUAdapterLike {
  features: GPUSupportedLike;
  limits: Record<string, number>;
  info?: unknown;
  requestAdapterInfo?: () => Promise<unknown>;
  requestDevice(desc: { requiredFeatures: string[]; requiredLimits: Record<string, number> }): Promise<GPUDeviceLike>;
}
interface GPULike {
  requestAdapter(opts: { powerPreference: 'low-power' | 'high-performance' }): Promise<GPUAdapterLike | null>;
}

/** Devices made by our factory (their shader modules get their `enable` directives hoisted), with the adapter's subgroup sizes. */
const HOISTING = new WeakMap<object, { min?: number; max?: number }>();
let ourFactory: (() => Promise<unknown>) | null = null;

/** The limits tfjs-backend-webgpu 4.22 raises to the adapter's (base.ts). */
const RAISED_LIMITS = [
  'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupSizeX',
  'maxComputeInvocationsPerWorkgroup',
] as const;

/** Features requested when the adapter offers them: tfjs's two, and ours. */
const OPTIONAL_FEATURES = ['timestamp-query', 'bgra8unorm-storage', 'subgroups', 'subgroup-size-control'] as const;

/** A directive line: `enable a, b;`, optionally followed by a line comment. */
const DIRECTIVE = /^[ \t]*enable[ \t]+[A-Za-z0-9_, \t]+;[ \t]*(\/\/.*)?$/gm;

/** `code` with its `enable …;` lines moved to the top (each once), or as it is when it has none. */
export function hoistEnableDirectives(code: string): string {
  if (!code.includes('enable')) return code;
  const directives: string[] = [];
  const rest = code.replace(DIRECTIVE, (line) => {
    directives.push(line.replace(/\/\/.*$/, '').trim());
    return '';
  });
  if (directives.length === 0) return code;
  return `${[...new Set(directives)].join('\n')}\n${rest}`;
}

/** A line `@subgroup_size(N)`, optionally followed by a line comment. */
const SUBGROUP_SIZE = /^[ \t]*@subgroup_size\((\d+)\)[ \t]*(\/\/.*)?$/m;

/** `code` with a `@subgroup_size(N)` line moved onto its `@compute` entry point, or as it is when it has none. */
export function placeSubgroupSize(code: string): string {
  const m = SUBGROUP_SIZE.exec(code);
  if (!m) return code;
  return code.replace(SUBGROUP_SIZE, '').replace('@compute @workgroup_size(', `@compute @subgroup_size(${m[1]}) @workgroup_size(`);
}

function hoistOn(device: GPUDeviceLike, info: AdapterInfoLike | undefined): void {
  const create = device.createShaderModule.bind(device);
  device.createShaderModule = (desc: ShaderModuleDescriptorLike) => create({ ...desc, code: placeSubgroupSize(hoistEnableDirectives(desc.code)) });
  HOISTING.set(device, { min: info?.subgroupMinSize, max: info?.subgroupMaxSize });
}

/** tfjs's `WEBGPU_USE_LOW_POWER_GPU` flag (registered by tfjs-backend-webgpu; false without it). */
function lowPower(): boolean {
  try {
    return !!env().get('WEBGPU_USE_LOW_POWER_GPU');
  } catch {
    return false;
  }
}

function gpu(): GPULike | undefined {
  return (globalThis as { navigator?: { gpu?: GPULike } }).navigator?.gpu;
}

/** tfjs-backend-webgpu's `WebGPUBackend` class (structurally: its constructor). */
export type WebGPUBackendClass = new (device: never, adapterInfo?: never) => unknown;

/**
 * (Re)registers tfjs's `webgpu` backend (priority 3, as tfjs) with a factory that requests the
 * device itself — tfjs's adapter options, limits and features, plus `subgroups` when the adapter
 * has it — and returns `new WebGPUBackend(device, adapterInfo)`. Pass tfjs-backend-webgpu's
 * `WebGPUBackend` (import the package first: it also registers the backend's kernels). Returns
 * true when our factory is registered (now or already), false when there is no `navigator.gpu`,
 * or when a `webgpu` backend was already started by another factory (it is left alone: its
 * tensors live on its device). Nothing is started here: `tf.setBackend('webgpu')` requests the
 * device.
 */
export function registerWebGPUBackend(WebGPUBackend: WebGPUBackendClass): boolean {
  if (typeof WebGPUBackend !== 'function') throw new Error(`registerWebGPUBackend: pass tfjs-backend-webgpu's WebGPUBackend class, got ${typeof WebGPUBackend}`);
  if (!gpu()) return false;
  if (ourFactory && findBackendFactory('webgpu') === ourFactory) return true;
  if (startedBackend()) return false;
  if (findBackendFactory('webgpu')) removeBackend('webgpu');
  const factory = async () => {
    const adapter = await gpu()!.requestAdapter({ powerPreference: lowPower() ? 'low-power' : 'high-performance' });
    if (!adapter) throw new Error('navigator.gpu.requestAdapter() returned null (no usable GPU adapter)');
    const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
    const requiredLimits: Record<string, number> = {};
    for (const name of RAISED_LIMITS) {
      const v = adapter.limits[name];
      if (v !== undefined) requiredLimits[name] = v;
    }
    const device = await adapter.requestDevice({ requiredFeatures: [...requiredFeatures], requiredLimits });
    const adapterInfo = 'info' in adapter ? adapter.info : adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : undefined;
    hoistOn(device, adapterInfo as AdapterInfoLike | undefined);
    return new (WebGPUBackend as unknown as new (device: unknown, adapterInfo?: unknown) => unknown)(device, adapterInfo);
  };
  registerBackend('webgpu', factory as never, 3);
  ourFactory = factory;
  return true;
}

interface WebGPUBackendWithDevice {
  device?: GPUDeviceLike;
}

/** The started `webgpu` backend, if any (without starting one). */
function startedBackend(): WebGPUBackendWithDevice | undefined {
  return (engine() as unknown as { registry: Record<string, WebGPUBackendWithDevice | undefined> }).registry.webgpu;
}

/** Whether the started `webgpu` backend's device has the `subgroups` feature (false when none is started). */
export function webgpuHasSubgroups(): boolean {
  return !!startedBackend()?.device?.features.has('subgroups');
}

/**
 * Whether kernels may use subgroup operations on the started `webgpu` backend: its device has
 * `subgroups` and was made by {@link registerWebGPUBackend} (which hoists the `enable` directive
 * that tfjs's shader assembly would otherwise leave after its declarations).
 */
export function webgpuSubgroupKernels(): boolean {
  const device = startedBackend()?.device;
  return !!device && HOISTING.has(device) && device.features.has('subgroups');
}

/** The subgroup sizes of the started `webgpu` backend's adapter, and whether a kernel may require one of them. */
export interface WebGPUSubgroupSizes {
  /** The adapter's `subgroupMinSize` and `subgroupMaxSize` (powers of two; WebGPU guarantees ≥ 4). */
  min: number;
  max: number;
  /** The device has `subgroup-size-control`: a shader may require a size in [min, max] with `@subgroup_size(N)`. */
  control: boolean;
}

/** {@link WebGPUSubgroupSizes} where {@link webgpuSubgroupKernels} holds and the adapter reports its sizes; else null. */
export function webgpuSubgroupSizes(): WebGPUSubgroupSizes | null {
  const device = startedBackend()?.device;
  const sizes = device && HOISTING.get(device);
  if (!device || !sizes || !device.features.has('subgroups') || sizes.min === undefined || sizes.max === undefined) return null;
  return { min: sizes.min, max: sizes.max, control: device.features.has('subgroup-size-control') };
}
