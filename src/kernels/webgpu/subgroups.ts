/**
 * Subgroup reductions that assume nothing about the subgroups: neither their size (NVIDIA 32,
 * AMD 32 or 64, Intel 8–32, SwiftShader 4) nor which invocations of the workgroup share one (an
 * implementation need not make subgroups contiguous runs of `local_invocation_index`). Each
 * subgroup's lowest local index (subgroupMin) sets its bit in a workgroup bitmask; a subgroup's
 * slot is the number of leaders below its own (popcounts), and the number of subgroups is the
 * number of bits. Partials are summed in slot order, so results are deterministic; where subgroups
 * are contiguous runs (every device we know), slot s is invocations s·size … s·size + size − 1.
 *
 * Kernels use subgroups only on a device made by src/backends/webgpuDevice.ts (it hoists the
 * `enable` directives and places `@subgroup_size` on tfjs's entry point).
 */
import { webgpuSubgroupSizes } from './program.js';

/** Settings of every subgroup kernel (tests). */
export const subgroupKernelConfig: {
  /**
   * Require this subgroup size (`@subgroup_size(N)`: a power of two in the adapter's
   * [subgroupMinSize, subgroupMaxSize], at most the workgroup's invocations; the device needs
   * `subgroup-size-control`). Default: the implementation's choice.
   */
  size?: number;
} = {};

/**
 * The subgroup size a kernel of `threads` invocations is to require now ({@link subgroupKernelConfig}),
 * 0 for the implementation's choice; throws, naming the setting, when the device cannot.
 */
export function requiredSubgroupSize(fn: string, threads: number): number {
  const size = subgroupKernelConfig.size;
  if (size === undefined) return 0;
  const sizes = webgpuSubgroupSizes();
  const why = !sizes
    ? 'the device reports no subgroup sizes'
    : !sizes.control
      ? "the device has no 'subgroup-size-control'"
      : !Number.isInteger(Math.log2(size)) || size < sizes.min || size > sizes.max
        ? `the adapter's subgroup sizes are the powers of two from ${sizes.min} to ${sizes.max}`
        : size > threads
          ? `the workgroup has ${threads} invocations`
          : null;
  if (why) throw new Error(`${fn}: subgroupKernelConfig.size ${size} cannot be required: ${why}`);
  return size;
}

/** WGSL lines before a subgroup kernel's code: the directives and, when `size` > 0, the entry point's required size. */
export function subgroupDirectivesWGSL(size: number): string {
  const lines = ['enable subgroups;   // directives and @subgroup_size are placed by src/backends/webgpuDevice.ts'];
  if (size > 0) lines.push('enable subgroup_size_control;', `@subgroup_size(${size})`);
  return lines.join('\n');
}

/**
 * WGSL for a 1-D workgroup of `wg` invocations: `subgroupSlots()` (call it first in main(), in
 * uniform control flow: it has two barriers) returns the number of subgroups and sets the private
 * `sgLead` (this invocation writes its subgroup's partial) and `sgRank` (its subgroup's slot).
 */
export function subgroupSlotsWGSL(wg: number): string {
  const words = Math.ceil(wg / 32);
  return /* wgsl */ `
// Subgroup slots: slot = number of subgroup leaders (lowest local index) below this subgroup's,
// from a bitmask of leaders; no assumption on the subgroup size or on which invocations form one.
var<workgroup> sgMask : array<atomic<u32>, ${words}>;
var<workgroup> sgCount : u32;
var<private> sgLead : bool;
var<private> sgRank : u32;

fn subgroupSlots() -> u32 {
  if (localIndex < ${words}u) { atomicStore(&sgMask[localIndex], 0u); }
  workgroupBarrier();
  let lead = subgroupMin(localIndex);
  sgLead = localIndex == lead;
  if (sgLead) { atomicOr(&sgMask[lead / 32u], 1u << (lead % 32u)); }
  workgroupBarrier();
  var rank = 0u;
  var total = 0u;
  for (var w = 0u; w < ${words}u; w++) {
    let bits = atomicLoad(&sgMask[w]);
    total += countOneBits(bits);
    if (w < lead / 32u) { rank += countOneBits(bits); }
    if (w == lead / 32u) { rank += countOneBits(bits & ((1u << (lead % 32u)) - 1u)); }
  }
  sgRank = rank;
  if (localIndex == 0u) { sgCount = total; }
  return workgroupUniformLoad(&sgCount);
}
`;
}

/** Workgroup memory of {@link subgroupSlotsWGSL}, bytes. */
export const subgroupSlotsBytes = (wg: number): number => 4 * (Math.ceil(wg / 32) + 1);
