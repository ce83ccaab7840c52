/** Checkpoint sources (paths, Files, URLs) behind one ModelDirectory interface (being split into this folder). */
export * from '../source.js';
