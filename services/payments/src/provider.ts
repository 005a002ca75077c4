/**
 * The payment provider seam: `PaymentProvider` (what the payments service needs from a
 * card processor), its errors, and `createSimulatedProvider`, a deterministic
 * simulator that answers Stripe-style test tokens:
 *
 *   tok_visa               captured
 *   tok_chargeDeclined     declined, "card declined"
 *   tok_insufficientFunds  declined, "insufficient funds"
 *   tok_processingError    ProviderTransientError (every time; the caller retries)
 *   anything else          declined, "invalid payment token"
 *
 * Like Stripe's idempotency keys, a request repeated with the same key returns the
 * first answer and makes no second charge. References are derived from the key
 * (`ch_` / `re_` + sha256 prefix), so even a fresh simulator (after a crash of this
 * process) answers a retried charge with the same charge.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

export interface ChargeRequest {
  /** Same key, same charge: the payments service uses the order id. */
  idempotencyKey: string;
  /** A provider token for the payment method; never card data, never logged. */
  token: string;
  /** Minor units of `currency`. */
  amount: bigint;
  currency: string;
}

export type ChargeResult =
  | { status: "captured"; reference: string }
  | { status: "declined"; reference: string; reason: string };

export interface RefundRequest {
  idempotencyKey: string;
  /** The `reference` of the captured charge. */
  chargeId: string;
  amount: bigint;
}

export interface RefundResult {
  reference: string;
}

export interface PaymentProvider {
  /** Declines are results; throws ProviderTransientError when a retry may succeed. */
  charge(request: ChargeRequest): Promise<ChargeResult>;
  /** Throws ProviderTransientError when a retry may succeed, ProviderError when none will. */
  refund(request: RefundRequest): Promise<RefundResult>;
}

/** The provider refused the request for good (bad parameters, unknown charge). */
export class ProviderError extends Error {
  override name = "ProviderError";
}

/** The provider failed in a way a retry with the same idempotency key may fix. */
export class ProviderTransientError extends Error {
  override name = "ProviderTransientError";
}

/** Test tokens of the simulator. */
export const TEST_TOKENS = {
  visa: "tok_visa",
  chargeDeclined: "tok_chargeDeclined",
  insufficientFunds: "tok_insufficientFunds",
  processingError: "tok_processingError",
} as const;

const DECLINES: Record<string, string> = {
  [TEST_TOKENS.chargeDeclined]: "card declined",
  [TEST_TOKENS.insufficientFunds]: "insufficient funds",
};

interface Recorded<Req, Res> {
  request: Req;
  result: Res;
}

export interface SimulatedProvider extends PaymentProvider {
  /** Every distinct charge answered (captured or declined), by idempotency key. */
  readonly charges: ReadonlyMap<string, ChargeResult>;
  /** Every distinct refund made, by idempotency key. */
  readonly refunds: ReadonlyMap<string, RefundResult>;
}

/** A provider reference derived from the idempotency key: stable across restarts. */
export function referenceFor(prefix: "ch" | "re", idempotencyKey: string): string {
  return `${prefix}_${createHash("sha256").update(idempotencyKey).digest("hex").slice(0, 24)}`;
}

export function createSimulatedProvider(options: { latencyMs?: number } = {}): SimulatedProvider {
  const latencyMs = options.latencyMs ?? 0;
  const charges = new Map<string, Recorded<ChargeRequest, ChargeResult>>();
  const refunds = new Map<string, Recorded<RefundRequest, RefundResult>>();

  // Stripe rejects a key reused with other parameters: that is a caller bug, not a retry.
  const sameParams = (a: object, b: object, fields: string[]) =>
    fields.every((f) => (a as Record<string, unknown>)[f] === (b as Record<string, unknown>)[f]);

  return {
    get charges() {
      return new Map([...charges].map(([k, v]) => [k, v.result]));
    },
    get refunds() {
      return new Map([...refunds].map(([k, v]) => [k, v.result]));
    },

    async charge(request) {
      if (latencyMs > 0) await sleep(latencyMs);
      const previous = charges.get(request.idempotencyKey);
      if (previous !== undefined) {
        if (!sameParams(previous.request, request, ["token", "amount", "currency"])) {
          throw new ProviderError("idempotency key reused with different parameters");
        }
        return previous.result;
      }
      if (request.amount <= 0n) throw new ProviderError("amount must be positive");
      // Like Stripe's 5xx answers, a processing error is not recorded: a retry runs again.
      if (request.token === TEST_TOKENS.processingError) {
        throw new ProviderTransientError("provider processing error");
      }
      const reference = referenceFor("ch", request.idempotencyKey);
      const declined =
        request.token === TEST_TOKENS.visa
          ? undefined
          : (DECLINES[request.token] ?? "invalid payment token");
      const result: ChargeResult =
        declined === undefined
          ? { status: "captured", reference }
          : { status: "declined", reference, reason: declined };
      charges.set(request.idempotencyKey, { request: { ...request }, result });
      return result;
    },

    async refund(request) {
      if (latencyMs > 0) await sleep(latencyMs);
      const previous = refunds.get(request.idempotencyKey);
      if (previous !== undefined) {
        if (!sameParams(previous.request, request, ["chargeId", "amount"])) {
          throw new ProviderError("idempotency key reused with different parameters");
        }
        return previous.result;
      }
      if (!request.chargeId.startsWith("ch_")) throw new ProviderError("no such charge");
      // A charge this instance answered can be checked; one from before a restart is
      // taken on trust, as the references are all the simulator keeps across restarts.
      const charge = [...charges.values()].find((c) => c.result.reference === request.chargeId);
      if (charge !== undefined && charge.result.status !== "captured") {
        throw new ProviderError("charge was not captured");
      }
      if (
        request.amount <= 0n ||
        (charge !== undefined && request.amount > charge.request.amount)
      ) {
        throw new ProviderError("refund amount out of range");
      }
      const result = { reference: referenceFor("re", request.idempotencyKey) };
      refunds.set(request.idempotencyKey, { request: { ...request }, result });
      return result;
    },
  };
}
