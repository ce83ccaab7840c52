/** Shared checks and message formatting (option names, values, errors). */
export * from './format.js';
export * from './options.js';
