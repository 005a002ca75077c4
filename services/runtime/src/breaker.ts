/**
 * A circuit breaker per downstream: after `threshold` consecutive transport failures
 * (UNAVAILABLE, DEADLINE_EXCEEDED) calls fail fast with UNAVAILABLE for `openMs`, then
 * one trial call is let through (half-open); its success closes the circuit again.
 */
import { Code, UnavailableError } from "./errors.js";

export interface BreakerOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  threshold?: number;
  /** How long the circuit stays open before a trial call. Default 2 s. */
  openMs?: number;
}

export interface Breaker {
  /** Throws UnavailableError when the circuit is open. */
  before(): void;
  after(code: number): void;
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
    },
    after(code) {
      trialInFlight = false;
      if (!TRIPPING.has(code)) {
        failures = 0;
        state = "closed";
        return;
      }
      failures++;
      if (state === "half-open" || failures >= threshold) {
        state = "open";
        openedAt = Date.now();
      }
    },
  };
}
