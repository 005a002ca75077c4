/**
 * A circuit breaker per downstream: after `threshold` consecutive transport failures
 * (UNAVAILABLE, DEADLINE_EXCEEDED) calls fail fast with UNAVAILABLE for `openMs`, then
 * one trial call is let through (half-open); its success closes the circuit again.
 *
 * A failure counts only if its call started after the last success: when one replica of
 * several dies, the calls that were in flight to it fail together, while calls to the
 * others keep succeeding — those failures say nothing about the downstream as a whole,
 * and must not cut the healthy replicas off too.
 */
import { Code, UnavailableError } from "./errors.js";

export interface BreakerOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  threshold?: number;
  /** How long the circuit stays open before a trial call. Default 2 s. */
  openMs?: number;
}

export interface Breaker {
  /** Throws UnavailableError when the circuit is open; else the call's ticket for `after`. */
  before(): number;
  /** The call's outcome, with the ticket `before` gave it. */
  after(code: number, ticket: number): void;
  readonly state: "closed" | "open" | "half-open";
}

const TRIPPING: ReadonlySet<number> = new Set([Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED]);

export function createBreaker(name: string, options: BreakerOptions = {}): Breaker {
  const threshold = options.threshold ?? 5;
  const openMs = options.openMs ?? 2_000;
  let failures = 0;
  let openedAt = 0;
  let state: Breaker["state"] = "closed";
  let trialInFlight = false;
  /** Successes so far: a call's ticket is the count when it started. */
  let successes = 0;
  return {
    get state() {
      return state;
    },
    before() {
      if (state === "open") {
        if (Date.now() - openedAt < openMs) throw new UnavailableError(`${name}: circuit open`);
        state = "half-open";
      }
      if (state === "half-open") {
        if (trialInFlight) throw new UnavailableError(`${name}: circuit open`);
        trialInFlight = true;
      }
      return successes;
    },
    after(code, ticket) {
      trialInFlight = false;
      if (!TRIPPING.has(code)) {
        successes++;
        failures = 0;
        state = "closed";
        return;
      }
      // Started before the last success: that success came after it, from the same
      // downstream, so the downstream answers (a half-open trial always counts).
      if (ticket < successes && state !== "half-open") return;
      failures++;
      if (state === "half-open" || failures >= threshold) {
        state = "open";
        openedAt = Date.now();
      }
    },
  };
}
