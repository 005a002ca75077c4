import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { runLoop, runOpenLoop } from "../lib/loop.js";

describe("runOpenLoop", () => {
  it("starts exactly rate × seconds operations in the window, so all succeeding is the offered rate", async () => {
    let started = 0;
    const r = await runOpenLoop({
      rate: 400,
      warmupMs: 100,
      durationMs: 250,
      maxInFlight: 1_000,
      op: async () => {
        started++;
        await sleep(5);
      },
    });
    expect(started).toBe(20 + 100); // the warm-up ramps up: half the rate on average
    expect(r.ops).toBe(100);
    expect(r.errors).toBe(0);
    expect(r.rate).toBe(400);
    expect(r.offeredRate).toBe(400);
    expect(r.concurrency).toBeGreaterThanOrEqual(2); // 5 ms each, one every 2.5 ms
  });

  it("charges a stall to every operation due during it (latency from the schedule)", async () => {
    let n = 0;
    const stall = async () => {
      if (n++ === 20) {
        const until = performance.now() + 120;
        while (performance.now() < until); // the event loop blocked: nothing starts
      }
    };
    const open = await runOpenLoop({
      rate: 200,
      warmupMs: 0,
      durationMs: 500,
      maxInFlight: 1_000,
      op: stall,
    });
    // ~24 operations were due during the 120 ms; each waited out the rest of it.
    expect(open.latencyMs.max).toBeGreaterThanOrEqual(100);
    expect(open.latencyMs.p90).toBeGreaterThanOrEqual(20);
    // A closed loop times only the call itself, so it hides the same stall.
    n = 0;
    const closed = await runLoop({ concurrency: 1, warmupMs: 0, durationMs: 300, op: stall });
    expect(closed.latencyMs.p90).toBeLessThan(20);
  });

  it("does not start an operation while maxInFlight are in flight, and counts it as an error", async () => {
    const r = await runOpenLoop({
      rate: 500,
      warmupMs: 0,
      durationMs: 100,
      maxInFlight: 10,
      op: () => sleep(1_000),
    });
    expect(r.ops).toBe(10);
    expect(r.errors).toBe(40);
    expect(r.errorSamples[0]).toMatch(/not started: 10 operations in flight/);
    expect(r.concurrency).toBe(10);
  });

  it("counts a failed operation of the window as an error, not as a rate", async () => {
    let n = 0;
    const r = await runOpenLoop({
      rate: 100,
      warmupMs: 0,
      durationMs: 100,
      maxInFlight: 100,
      op: async () => {
        if (n++ % 2 === 0) throw new Error("cancelled");
      },
    });
    expect(r.ops).toBe(5);
    expect(r.errors).toBe(5);
    expect(r.rate).toBe(50);
  });
});
