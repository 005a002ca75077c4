/**
 * The closed-loop load driver every scenario uses: `concurrency` workers, each
 * issuing one operation at a time back to back, for a warm-up and then a measured
 * window. An operation is counted (and its latency, from performance.now() before the
 * call to after it settles, recorded) when it completes inside the window.
 */
import { type Percentiles, Recorder } from "./stats.js";

export interface LoopOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** One operation; a throw or rejection counts as an error. */
  op: (worker: number) => Promise<void>;
}

export interface LoopResult {
  concurrency: number;
  seconds: number;
  ops: number;
  errors: number;
  /** Successful operations per second over the measured window. */
  rate: number;
  latencyMs: Percentiles;
  /** A few distinct error messages, for the report. */
  errorSamples: string[];
}

export async function runLoop(o: LoopOptions): Promise<LoopResult> {
  const recorder = new Recorder();
  const errorSamples = new Set<string>();
  let errors = 0;
  const t0 = performance.now();
  const windowStart = t0 + o.warmupMs;
  const windowEnd = windowStart + o.durationMs;

  const worker = async (w: number) => {
    for (;;) {
      const started = performance.now();
      if (started >= windowEnd) return;
      let failed: unknown;
      try {
        await o.op(w);
      } catch (err) {
        failed = err;
      }
      const done = performance.now();
      if (done < windowStart || done > windowEnd) continue;
      if (failed === undefined) {
        recorder.record(done - started);
      } else {
        errors++;
        if (errorSamples.size < 5) errorSamples.add(String((failed as Error)?.message ?? failed));
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(w)));
  const seconds = o.durationMs / 1000;
  return {
    concurrency: o.concurrency,
    seconds,
    ops: recorder.count,
    errors,
    rate: recorder.count / seconds,
    latencyMs: recorder.percentiles(),
    errorSamples: [...errorSamples],
  };
}
