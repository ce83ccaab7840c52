/**
 * Prints, after the run, how many tests ran on each backend (from the `[backend]` prefix that
 * describeEachBackend gives every suite), then one `N passed, N failed, N skipped` line.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class BackendCountReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const counts = new Map<string, { passed: number; failed: number; skipped: number }>();
    const total = { passed: 0, failed: 0, skipped: 0 };
    for (const mod of modules) {
      for (const test of mod.children.allTests()) {
        const backend = /^\[(\w+)\]/.exec(test.fullName)?.[1] ?? '(backend-independent)';
        const c = counts.get(backend) ?? { passed: 0, failed: 0, skipped: 0 };
        const state = test.result().state;
        const key = state === 'passed' ? 'passed' : state === 'failed' ? 'failed' : 'skipped';
        c[key]++;
        total[key]++;
        counts.set(backend, c);
      }
    }
    const lines = ['', 'Tests per backend:'];
    for (const [backend, c] of [...counts].sort()) {
      lines.push(`  ${backend.padEnd(22)} ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped`);
    }
    lines.push(`${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`, '');
    process.stdout.write(lines.join('\n'));
  }
}
