/**
 * The load drivers.
 *
 * `runLoop`, closed loop, which every scenario uses: `concurrency` workers, each issuing
 * one operation at a time back to back, for a warm-up and then a measured window. An
 * operation is counted (and its latency, from performance.now() before the call to after
 * it settles, recorded) when it completes inside the window. Its rate is what that many
 * clients get; by Little's law it is at most concurrency ÷ mean latency.
 *
 * `runOpenLoop`, open loop, for a target stated as a rate: operations start on a fixed
 * schedule (`rate` per second), whether or not earlier ones have finished, as independent
 * users' requests do. Latency counts from the scheduled start, so a stall delays every
 * operation due during it, as it would delay users (no coordinated omission). The
 * warm-up ramps the rate up from zero (a cold stack given the full rate at once builds
 * a backlog while its code is compiled, and then works that off in the window). The window
 * is a number of scheduled operations; each of them is waited for, and the rate is those
 * that succeeded ÷ the window's seconds — the offered rate exactly when all succeed.
 */
import { setTimeout as sleep } from "node:timers/promises";
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
  /** Open loop: the rate operations were started at (concurrency is then the peak in flight). */
  offeredRate?: number;
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
  return resultOf(recorder, errors, errorSamples, o.durationMs / 1000, o.concurrency);
}

function resultOf(
  recorder: Recorder,
  errors: number,
  errorSamples: Set<string>,
  seconds: number,
  concurrency: number,
): LoopResult {
  return {
    concurrency,
    seconds,
    ops: recorder.count,
    errors,
    rate: recorder.count / seconds,
    latencyMs: recorder.percentiles(),
    errorSamples: [...errorSamples],
  };
}

export interface OpenLoopOptions {
  /** Operations started per second. */
  rate: number;
  warmupMs: number;
  durationMs: number;
  /**
   * At most this many in flight: an operation due while this many are is not started
   * and counts as an error (the system has fallen that far behind).
   */
  maxInFlight: number;
  /** One operation, given its scheduled start (performance.now() clock). */
  op: (scheduledAt: number) => Promise<void>;
}

export async function runOpenLoop(o: OpenLoopOptions): Promise<LoopResult> {
  const recorder = new Recorder();
  const errorSamples = new Set<string>();
  let errors = 0;
  const interval = 1000 / o.rate;
  // Warm-up: the rate climbs linearly from 0 to `rate`, so rate × warm-up ÷ 2 operations,
  // the i-th at warmupMs × √(i ÷ first).
  const first = Math.round((o.warmupMs / 1000) * o.rate * 0.5); // index of the window's first
  const count = Math.max(1, Math.round((o.durationMs / 1000) * o.rate));
  const due = (i: number) =>
    i < first ? o.warmupMs * Math.sqrt(i / first) : o.warmupMs + (i - first) * interval;
  const inFlight = new Set<Promise<void>>();
  let peak = 0;
  const failed = (inWindow: boolean, err: unknown) => {
    if (!inWindow) return;
    errors++;
    if (errorSamples.size < 5) errorSamples.add(String((err as Error)?.message ?? err));
  };
  const start = (i: number, at: number) => {
    const inWindow = i >= first;
    if (inFlight.size >= o.maxInFlight) {
      failed(inWindow, new Error(`not started: ${o.maxInFlight} operations in flight`));
      return;
    }
    const run: Promise<void> = o
      .op(at)
      .then(
        () => {
          if (inWindow) recorder.record(performance.now() - at);
        },
        (err: unknown) => failed(inWindow, err),
      )
      .finally(() => inFlight.delete(run));
    inFlight.add(run);
    peak = Math.max(peak, inFlight.size);
  };
  const t0 = performance.now();
  for (let i = 0; i < first + count; ) {
    const now = performance.now();
    // Every operation that is due (several, when a timer fired late).
    while (i < first + count && t0 + due(i) <= now) {
      start(i, t0 + due(i));
      i++;
    }
    if (i < first + count) await sleep(Math.max(0, t0 + due(i) - performance.now()));
  }
  await Promise.all(inFlight);
  return { ...resultOf(recorder, errors, errorSamples, count / o.rate, peak), offeredRate: o.rate };
}
