/**
 * The order saga driven through the real bus: payment events are published into
 * JetStream as payments would publish them, and orders' durable consumers move the
 * orders on — CONFIRMED + OrderConfirmed, or CANCELLED + stock released +
 * OrderCancelled — once per event however often it is delivered.
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Order, OrderStatus } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import type { CallOptions } from "@shopmesh/runtime/grpc-client.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ORDER_CANCELLED, ORDER_CONFIRMED } from "../src/state-machine.js";
import { type Stack, startStack } from "./harness.js";

let s: Stack;
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});

async function place(auth: CallOptions, quantity = 2, stock = 10) {
  const product = await s.insertProduct({ stock, priceAmount: 1500n });
  const { order } = await s.client.placeOrder(
    { items: [{ productId: product.id, quantity }], paymentToken: "tok_visa" },
    auth,
  );
  if (order === undefined) throw new Error("no order");
  return { order, product };
}

/** The order once it has reached `status` (consumers work asynchronously). */
async function once(order: Order, auth: CallOptions, status: OrderStatus): Promise<Order> {
  const current = async () => (await s.client.getOrder({ orderId: order.id }, auth)).order;
  await expect.poll(async () => (await current())?.status, { timeout: 10_000 }).toBe(status);
  const reached = await current();
  if (reached === undefined) throw new Error("order vanished");
  return reached;
}

describe("PaymentSucceeded", () => {
  it("confirms the order and emits OrderConfirmed, once however often it is delivered", async () => {
    const { userId, auth } = await s.customer();
    const { order } = await place(auth);
    const paymentId = crypto.randomUUID();
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    await s.paymentSucceeded(order, paymentId, { traceparent });

    const confirmed = await once(order, auth, OrderStatus.CONFIRMED);
    expect(confirmed.paymentId).toBe(paymentId);
    expect(confirmed.history.map((h) => h.status)).toEqual([
      OrderStatus.PENDING_PAYMENT,
      OrderStatus.CONFIRMED,
    ]);
    const events = await s.outboxEventsOf(order.id, ORDER_CONFIRMED);
    expect(events.map((e) => e.event)).toMatchObject([
      { orderId: order.id, userId, paymentId, total: { currencyCode: "USD", amount: 3000n } },
    ]);
    // The trace of the payment goes on with the confirmation.
    expect(events[0]?.row.headers["traceparent"]).toBe(traceparent);
    await expect
      .poll(() => s.publishedEventsOf(order.id, ORDER_CONFIRMED).length, { timeout: 10_000 })
      .toBe(1);

    // Redelivery of the very same event (same event id): the durables are recreated,
    // and a fresh durable is idle only once it has been handed, and has acked, every
    // payment event in the stream — ours included. The inbox skips it.
    await s.replayAllEvents();
    await expect.poll(() => s.consumersIdle(), { timeout: 15_000 }).toBe(true);
    // Another report of the same capture under a new event id: the state machine
    // knows the order is no longer pending.
    await s.paymentSucceeded(order, paymentId);
    await expect.poll(() => s.consumersIdle(), { timeout: 15_000 }).toBe(true);

    const after = (await s.client.getOrder({ orderId: order.id }, auth)).order;
    expect(after).toEqual(confirmed);
    expect(await s.outboxEventsOf(order.id, ORDER_CONFIRMED)).toHaveLength(1);
  });

  it("leaves an order the user cancelled meanwhile cancelled (payments refunds)", async () => {
    const { auth } = await s.customer();
    const { order, product } = await place(auth, 1, 4);
    await s.client.cancelOrder({ orderId: order.id, reason: "too slow" }, auth);
    await s.paymentSucceeded(order);
    await expect.poll(() => s.consumersIdle(), { timeout: 15_000 }).toBe(true);

    const after = (await s.client.getOrder({ orderId: order.id }, auth)).order;
    expect(after?.status).toBe(OrderStatus.CANCELLED);
    expect(after?.paymentId).toBe("");
    expect(await s.outboxEventsOf(order.id, ORDER_CONFIRMED)).toHaveLength(0);
    expect(await s.stockOf(product.id)).toBe(4);
  });
});

describe("PaymentFailed", () => {
  it("cancels the order with the event's reason, releases its stock and emits OrderCancelled", async () => {
    const { userId, auth } = await s.customer();
    const { order, product } = await place(auth, 3, 5);
    expect(await s.stockOf(product.id)).toBe(2);
    await s.paymentFailed(order, "card_declined");

    const cancelled = await once(order, auth, OrderStatus.CANCELLED);
    expect(cancelled.cancelReason).toBe("card_declined");
    expect(cancelled.history.map((h) => [h.status, h.reason])).toEqual([
      [OrderStatus.PENDING_PAYMENT, ""],
      [OrderStatus.CANCELLED, "card_declined"],
    ]);
    expect(await s.stockOf(product.id)).toBe(5);
    const events = await s.outboxEventsOf(order.id, ORDER_CANCELLED);
    expect(events.map((e) => e.event)).toMatchObject([
      { orderId: order.id, userId, reason: "card_declined", wasConfirmed: false },
    ]);
  });

  it("is redelivered while the catalog is down, and applied once it is back", async () => {
    const { auth } = await s.customer();
    const { order, product } = await place(auth, 2, 6);
    await s.catalogDown();
    try {
      await s.paymentFailed(order, "insufficient_funds");
      // The release fails, the transaction (inbox row included) rolls back, and the
      // bus delivers the event again.
      await expect
        .poll(() => s.redeliveriesPending("payment_failed"), { timeout: 10_000 })
        .toBeGreaterThan(0);
      const meanwhile = (await s.client.getOrder({ orderId: order.id }, auth)).order;
      expect(meanwhile?.status).toBe(OrderStatus.PENDING_PAYMENT);
      expect(await s.stockOf(product.id)).toBe(4);
    } finally {
      await s.catalogUp();
    }
    const cancelled = await once(order, auth, OrderStatus.CANCELLED);
    expect(cancelled.cancelReason).toBe("insufficient_funds");
    expect(await s.stockOf(product.id)).toBe(6);
    expect(await s.outboxEventsOf(order.id, ORDER_CANCELLED)).toHaveLength(1);
  });
});

describe("the whole saga", () => {
  it("placed → confirmed → cancelled → refunded: every step in the history, with times", async () => {
    const { userId, auth } = await s.customer();
    const { order, product } = await place(auth, 2, 5);
    const paymentId = crypto.randomUUID();
    await s.paymentSucceeded(order, paymentId);
    await once(order, auth, OrderStatus.CONFIRMED);

    const { order: cancelled } = await s.client.cancelOrder(
      { orderId: order.id, reason: "arrived too late" },
      auth,
    );
    expect(cancelled?.status).toBe(OrderStatus.CANCELLED);
    expect(await s.stockOf(product.id)).toBe(5);
    // Confirmed before: payments must refund the capture.
    const events = await s.outboxEventsOf(order.id, ORDER_CANCELLED);
    expect(events.map((e) => e.event)).toMatchObject([
      { orderId: order.id, userId, reason: "arrived too late", wasConfirmed: true },
    ]);

    await s.paymentRefunded(order, paymentId);
    await expect
      .poll(
        async () =>
          (await s.client.getOrder({ orderId: order.id }, auth)).order?.history.length ?? 0,
        { timeout: 10_000 },
      )
      .toBe(4);
    const final = (await s.client.getOrder({ orderId: order.id }, auth)).order;
    expect(final?.status).toBe(OrderStatus.CANCELLED);
    expect(final?.paymentId).toBe(paymentId);
    expect(final?.history.map((h) => [h.status, h.reason])).toEqual([
      [OrderStatus.PENDING_PAYMENT, ""],
      [OrderStatus.CONFIRMED, "payment captured"],
      [OrderStatus.CANCELLED, "arrived too late"],
      [OrderStatus.CANCELLED, "payment refunded"],
    ]);
    const times = (final?.history ?? []).map((h) =>
      h.changeTime ? timestampDate(h.changeTime).getTime() : Number.NaN,
    );
    expect(times.every((t) => t > Date.now() - 60_000)).toBe(true);
    expect([...times].sort((a, b) => a - b)).toEqual(times);

    // A refund note is not guarded by any status: only the inbox keeps a redelivered
    // PaymentRefunded (same event id) from adding a second entry.
    await s.replayAllEvents();
    await expect.poll(() => s.consumersIdle(), { timeout: 15_000 }).toBe(true);
    expect((await s.client.getOrder({ orderId: order.id }, auth)).order).toEqual(final);
  });
});
