/**
 * The provider simulator: test tokens, deterministic references, Stripe-style
 * idempotency keys (a repeated request is answered, not executed again), refunds,
 * and the configured latency.
 */
import { describe, expect, it } from "vitest";
import {
  createSimulatedProvider,
  ProviderError,
  ProviderTransientError,
  referenceFor,
} from "../src/provider.js";

const charge = (key: string, token: string, amount = 1_000n) => ({
  idempotencyKey: key,
  token,
  amount,
  currency: "USD",
});

describe("simulated provider: charges", () => {
  it("captures tok_visa with a reference derived from the idempotency key", async () => {
    const p = createSimulatedProvider();
    const result = await p.charge(charge("order-1", "tok_visa"));
    expect(result).toEqual({ status: "captured", reference: referenceFor("ch", "order-1") });
    expect(result.reference).toMatch(/^ch_[0-9a-f]{24}$/);
    expect(referenceFor("ch", "order-2")).not.toBe(result.reference);
  });

  it.each([
    ["tok_chargeDeclined", "card declined"],
    ["tok_insufficientFunds", "insufficient funds"],
    ["tok_unknown", "invalid payment token"],
    ["", "invalid payment token"],
  ])("declines %s with %s", async (token, reason) => {
    const p = createSimulatedProvider();
    expect(await p.charge(charge("k", token))).toEqual({
      status: "declined",
      reason,
      reference: referenceFor("ch", "k"),
    });
  });

  it("fails tok_processingError transiently, every time, and records nothing", async () => {
    const p = createSimulatedProvider();
    for (let i = 0; i < 3; i++) {
      await expect(p.charge(charge("k", "tok_processingError"))).rejects.toBeInstanceOf(
        ProviderTransientError,
      );
    }
    expect(p.charges.size).toBe(0);
  });

  it("answers a repeated key with the first result and charges once", async () => {
    const p = createSimulatedProvider();
    const first = await p.charge(charge("order-1", "tok_visa"));
    const again = await p.charge(charge("order-1", "tok_visa"));
    expect(again).toEqual(first);
    expect([...p.charges.keys()]).toEqual(["order-1"]);
    // A declined charge is an answer too: repeating it does not try again.
    await p.charge(charge("order-2", "tok_chargeDeclined"));
    expect((await p.charge(charge("order-2", "tok_chargeDeclined"))).status).toBe("declined");
    expect(p.charges.size).toBe(2);
  });

  it("is deterministic across instances, as after a restart of the process", async () => {
    const before = await createSimulatedProvider().charge(charge("order-1", "tok_visa"));
    const after = await createSimulatedProvider().charge(charge("order-1", "tok_visa"));
    expect(after).toEqual(before);
  });

  it("refuses a key reused with other parameters, and non-positive amounts", async () => {
    const p = createSimulatedProvider();
    await p.charge(charge("order-1", "tok_visa", 1_000n));
    await expect(p.charge(charge("order-1", "tok_visa", 2_000n))).rejects.toBeInstanceOf(
      ProviderError,
    );
    await expect(p.charge(charge("order-1", "tok_chargeDeclined"))).rejects.toThrow(
      /different parameters/,
    );
    await expect(p.charge(charge("order-3", "tok_visa", 0n))).rejects.toBeInstanceOf(ProviderError);
  });

  it("waits the configured latency", async () => {
    const p = createSimulatedProvider({ latencyMs: 120 });
    const started = performance.now();
    await p.charge(charge("k", "tok_visa"));
    expect(performance.now() - started).toBeGreaterThanOrEqual(110);
  });
});

describe("simulated provider: refunds", () => {
  it("refunds a captured charge once per key, with a derived reference", async () => {
    const p = createSimulatedProvider();
    const { reference: chargeId } = await p.charge(charge("order-1", "tok_visa"));
    const req = { idempotencyKey: "refund:order-1", chargeId, amount: 1_000n };
    const first = await p.refund(req);
    expect(first).toEqual({ reference: referenceFor("re", "refund:order-1") });
    expect(await p.refund(req)).toEqual(first);
    expect(p.refunds.size).toBe(1);
  });

  it("refuses declined or unknown charges and amounts above the charge", async () => {
    const p = createSimulatedProvider();
    const declined = await p.charge(charge("order-1", "tok_chargeDeclined"));
    const captured = await p.charge(charge("order-2", "tok_visa", 500n));
    const refund = (chargeId: string, amount: bigint) =>
      p.refund({ idempotencyKey: `refund:${chargeId}`, chargeId, amount });
    await expect(refund(declined.reference, 1_000n)).rejects.toThrow(/not captured/);
    await expect(refund("nope", 1_000n)).rejects.toThrow(/no such charge/);
    await expect(refund(captured.reference, 501n)).rejects.toThrow(/out of range/);
    expect(p.refunds.size).toBe(0);
  });
});
