/**
 * The DCM view: the photo as the model sees it (padded to a square with LLaVA's grey, Pillow
 * bicubic to n·S) cut both ways, `localCrop` and `globalStrideCrop`, drawn as 18 labelled canvases.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CLIP_MEAN, CLIP_STD, globalStrideCrop, localCrop, preprocessImage } from '../../src/index.js';

/** RGB values (0..255, any numeric array, pixel-major) → ImageData. */
export function toImageData(rgb: ArrayLike<number>, width: number, height: number, offset = 0): ImageData {
  const img = new ImageData(width, height);
  for (let i = 0, o = offset; i < width * height; i++, o += 3) {
    img.data[4 * i] = rgb[o]!;
    img.data[4 * i + 1] = rgb[o + 1]!;
    img.data[4 * i + 2] = rgb[o + 2]!;
    img.data[4 * i + 3] = 255;
  }
  return img;
}

/** The square model input (`[1, n·tile, n·tile, 3]`, 0..255) and its two sets of sub-images. */
function crops(rgb: tf.Tensor3D, n: number, tile: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
  return tf.tidy(() => {
    const x = preprocessImage(rgb, { size: n * tile }); // padded, resized, normalised: what CLIP gets
    const pixels = tf.clipByValue(tf.round(tf.mul(tf.add(tf.mul(x, tf.tensor1d([...CLIP_STD])), tf.tensor1d([...CLIP_MEAN])), 255)), 0, 255) as tf.Tensor4D;
    return [pixels, localCrop(pixels, n), globalStrideCrop(pixels, n)];
  });
}

/**
 * Draws the n² local and n² global sub-images of `rgb` (`[H, W, 3]`, 0..255) into the two grid
 * elements, each tile `tile` pixels square. Returns the square model input as ImageData.
 */
export async function drawSubImages(rgb: tf.Tensor3D, n: number, tile: number, localGrid: HTMLElement, globalGrid: HTMLElement): Promise<ImageData> {
  const [square, local, global] = crops(rgb, n, tile);
  try {
    const [sq, l, g] = await Promise.all([square.data(), local.data(), global.data()]);
    for (const [grid, data, perspective] of [
      [localGrid, l, 'local'],
      [globalGrid, g, 'global'],
    ] as const) {
      grid.replaceChildren();
      grid.style.gridTemplateColumns = `repeat(${n}, 1fr)`;
      for (let k = 0; k < n * n; k++) {
        const [a, b] = [Math.floor(k / n), k % n];
        const canvas = document.createElement('canvas');
        canvas.width = canvas.height = tile;
        canvas.dataset.testid = 'subimage';
        canvas.dataset.perspective = perspective;
        canvas.dataset.index = String(k);
        const label = `${perspective} (${a},${b})`;
        canvas.setAttribute('aria-label', label);
        canvas.getContext('2d')!.putImageData(toImageData(data, tile, tile, k * tile * tile * 3), 0, 0);
        const fig = document.createElement('figure');
        fig.className = 'tile';
        const caption = document.createElement('span');
        caption.textContent = label;
        caption.className = perspective;
        fig.append(canvas, caption);
        grid.append(fig);
      }
    }
    return toImageData(sq, n * tile, n * tile);
  } finally {
    tf.dispose([square, local, global]);
  }
}
