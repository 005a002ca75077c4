import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { every } from "../src/every.js";

describe("every", () => {
  it("repeats a pass, never two at once, and stop() waits for the one in progress", async () => {
    let running = 0;
    let most = 0;
    let passes = 0;
    let finished = 0;
    const periodic = every(
      5,
      async () => {
        passes++;
        running++;
        most = Math.max(most, running);
        await sleep(30); // longer than the interval: due passes meanwhile are skipped
        running--;
        finished++;
      },
      () => {},
    );
    await expect.poll(() => passes, { timeout: 2_000 }).toBeGreaterThanOrEqual(3);
    await periodic.stop();
    expect(most).toBe(1);
    expect(finished).toBe(passes); // the pass in progress ended before stop() returned
    await sleep(50);
    expect(passes).toBe(finished); // none after stop()
    await periodic.pass(); // and none on demand either
    expect(passes).toBe(finished);
  });

  it("hands a failed pass to onError and tries again at the next", async () => {
    const errors: unknown[] = [];
    let calls = 0;
    const periodic = every(
      5,
      async () => {
        calls++;
        if (calls === 1) throw new Error("database away");
      },
      (err) => errors.push(err),
    );
    await periodic.pass();
    expect(errors).toEqual([new Error("database away")]);
    await expect.poll(() => calls, { timeout: 2_000 }).toBeGreaterThanOrEqual(2);
    await periodic.stop();
    expect(errors).toHaveLength(1);
  });
});
