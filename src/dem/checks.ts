import type { Tensor4D } from '@tensorflow/tfjs-core';
import { showJson as show } from '../util/format.js';
import { parseGrid, type Grid } from '../grid.js';


/** Checks a float32 NHWC feature map; `name` is the argument's name in the message. */
export function checkMap(x: Tensor4D | undefined, name: string, fn: string): Tensor4D {
  if (!x || typeof x !== 'object' || !('shape' in x)) throw new Error(`${fn}: ${name} must be a tf.Tensor4D`);
  if (x.isDisposed) throw new Error(`${fn}: ${name} is a disposed tensor`);
  if (x.rank !== 4) throw new Error(`${fn}: ${name} must be rank 4 (NHWC), got rank ${x.rank} with shape ${show(x.shape)}`);
  if (x.dtype !== 'float32') throw new Error(`${fn}: ${name} must be float32, got ${x.dtype}`);
  return x;
}

/** Checks two maps have the same shape. */
export function checkSameShape(a: Tensor4D, b: Tensor4D, names: [string, string], fn: string): void {
  if (a.shape.some((s, i) => s !== b.shape[i])) {
    throw new Error(`${fn}: ${names[0]} ${show(a.shape)} and ${names[1]} ${show(b.shape)} must have the same shape`);
  }
}

/** Parses `opts.grid` and checks it divides the map's height and width exactly. */
export function mapGrid(grid: Grid | undefined, shape: readonly number[], fn: string): [number, number] {
  if (grid === undefined) throw new Error(`${fn}: opts.grid is required (the DCM grid, e.g. 3)`);
  const [rows, cols] = parseGrid(grid, fn, 'opts.grid');
  const [, H, W] = shape as [number, number, number, number];
  if (H % rows !== 0 || W % cols !== 0) {
    throw new Error(`${fn}: grid [${rows}, ${cols}] does not divide the feature map of shape ${show(shape)} (height ${H} % ${rows} = ${H % rows}, width ${W} % ${cols} = ${W % cols})`);
  }
  return [rows, cols];
}

/** Checks a string option against its allowed values; returns it or the default. */
export function pick<T extends string>(value: T | undefined, allowed: readonly T[], name: string, fn: string): T {
  if (value === undefined) return allowed[0]!;
  if (!allowed.includes(value)) throw new Error(`${fn}: ${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${JSON.stringify(value)}`);
  return value;
}
