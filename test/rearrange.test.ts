import { describe, expect, it } from 'vitest';
import { simplifyPermutation } from '../src/dcm/rearrange.js';

// Backend-independent: the axis simplification the DCM transposes rely on.
describe('simplifyPermutation', () => {
  it('merges axes that stay adjacent and drops size-1 axes', () => {
    // localCrop of [1, 12, 9, 3] with n = 3: view [1, 3, 4, 3, 3, 3], perm [0, 1, 3, 2, 4, 5]
    expect(simplifyPermutation([1, 3, 4, 3, 3, 3], [0, 1, 3, 2, 4, 5])).toEqual({ shape: [3, 4, 3, 9], perm: [0, 2, 1, 3] });
    // globalStrideCrop keeps all six axes distinct (batch 2)
    expect(simplifyPermutation([2, 4, 3, 3, 3, 5], [0, 2, 4, 1, 3, 5])).toEqual({ shape: [2, 4, 3, 3, 3, 5], perm: [0, 2, 4, 1, 3, 5] });
    // identity collapses to one axis; all size-1 to none
    expect(simplifyPermutation([2, 3, 4], [0, 1, 2])).toEqual({ shape: [24], perm: [0] });
    expect(simplifyPermutation([1, 1], [1, 0])).toEqual({ shape: [], perm: [] });
    // grid [1, 4]: the row axis vanishes
    expect(simplifyPermutation([1, 1, 5, 4, 2, 3], [0, 1, 3, 2, 4, 5])).toEqual({ shape: [5, 4, 6], perm: [1, 0, 2] });
  });
});
