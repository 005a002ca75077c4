/**
 * The circuit breaker's rule, call by call: consecutive transport failures open it, but
 * only failures of calls started after the last success count — a replica dying with
 * calls in flight, while another keeps answering, does not cut the service off.
 */
import { describe, expect, it } from "vitest";
import { createBreaker } from "../src/breaker.js";
import { Code } from "../src/errors.js";

describe("circuit breaker", () => {
  it("opens after `threshold` failures in a row, fails fast, then lets one trial through", async () => {
    const breaker = createBreaker("down", { threshold: 3, openMs: 50 });
    for (let i = 0; i < 3; i++) breaker.after(Code.UNAVAILABLE, breaker.before());
    expect(breaker.state).toBe("open");
    expect(() => breaker.before()).toThrow(/down: circuit open/);
    await new Promise((r) => setTimeout(r, 60));
    const trial = breaker.before();
    expect(breaker.state).toBe("half-open");
    expect(() => breaker.before()).toThrow(/circuit open/); // one trial at a time
    breaker.after(Code.OK, trial);
    expect(breaker.state).toBe("closed");
  });

  it("ignores failures of calls started before the last success (one replica of two dies)", () => {
    const breaker = createBreaker("two-replicas", { threshold: 5 });
    // Twenty calls in flight, half of them to the replica that is about to die.
    const inFlight = Array.from({ length: 20 }, () => breaker.before());
    // The healthy replica answers one; then every call to the dead one fails at once.
    breaker.after(Code.OK, inFlight[0] as number);
    for (const ticket of inFlight.slice(10)) breaker.after(Code.UNAVAILABLE, ticket);
    expect(breaker.state).toBe("closed");
    expect(() => breaker.before()).not.toThrow();
  });

  it("still opens when calls started after the last success keep failing", () => {
    const breaker = createBreaker("all-down", { threshold: 5 });
    breaker.after(Code.OK, breaker.before());
    // Calls made after that success: the downstream is down as a whole.
    for (let i = 0; i < 4; i++) breaker.after(Code.DEADLINE_EXCEEDED, breaker.before());
    expect(breaker.state).toBe("closed");
    breaker.after(Code.UNAVAILABLE, breaker.before());
    expect(breaker.state).toBe("open");
  });

  it("does not count an application error (NOT_FOUND) as a failure, and it resets the count", () => {
    const breaker = createBreaker("app-errors", { threshold: 2 });
    breaker.after(Code.UNAVAILABLE, breaker.before());
    breaker.after(Code.NOT_FOUND, breaker.before());
    breaker.after(Code.UNAVAILABLE, breaker.before());
    expect(breaker.state).toBe("closed");
    breaker.after(Code.UNAVAILABLE, breaker.before());
    expect(breaker.state).toBe("open");
  });
});
