/**
 * The payments side of the saga over real NATS JetStream and a real PostgreSQL:
 * OrderPlaced and OrderCancelled are published into the shared stream as orders would,
 * and the payments consumers must charge, fail, refund and skip exactly once, however
 * often and in whatever order the events arrive.
 */
import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { OrderPlacedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { type EventMessage, runInEventContext } from "@shopmesh/runtime/bus.js";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inbox } from "../src/db/schema.js";
import {
  createOrderCancelledHandler,
  createOrderPlacedHandler,
  REASONS,
  SUBJECTS,
} from "../src/events.js";
import { referenceFor } from "../src/provider.js";
import { logger, type Payments, startPayments } from "./harness.js";

let p: Payments;
beforeAll(async () => {
  p = await startPayments({ consumers: true });
});
afterAll(async () => {
  await p?.stop();
});

describe("OrderPlaced", () => {
  it("captures tok_visa: one payment, one PaymentSucceeded", async () => {
    const order = await p.placeOrder({ token: "tok_visa", amount: 12_345n, currencyCode: "EUR" });
    const payment = await p.waitForPayment(order.orderId, "CAPTURED");
    expect(payment).toMatchObject({
      userId: order.userId,
      amount: 12_345n,
      currencyCode: "EUR",
      attempts: 1,
      failureReason: null,
      providerReference: referenceFor("ch", order.orderId),
    });
    const events = await p.eventsOf(order.orderId);
    expect(events.map((e) => e.subject)).toEqual([SUBJECTS.paymentSucceeded]);
    expect(events[0]?.event).toMatchObject({
      paymentId: payment.id,
      orderId: order.orderId,
      userId: order.userId,
      amount: { currencyCode: "EUR", amount: 12_345n },
    });
    // The event id is the outbox row id (the Nats-Msg-Id the relay will use).
    expect(events[0]?.event.eventId).toBe(events[0]?.id);
    expect(p.provider.simulator.charges.get(order.orderId)?.status).toBe("captured");
    // The event was recorded in the inbox with the effect.
    const applied = await p.database.db
      .select()
      .from(inbox)
      .where(eq(inbox.eventId, order.eventId));
    expect(applied).toEqual([expect.objectContaining({ consumer: p.names.orderPlaced })]);
  });

  it.each([
    ["tok_chargeDeclined", "card declined"],
    ["tok_insufficientFunds", "insufficient funds"],
    ["tok_doesNotExist", "invalid payment token"],
  ])("fails %s: FAILED %j and a non-retryable PaymentFailed", async (token, reason) => {
    const order = await p.placeOrder({ token });
    const payment = await p.waitForPayment(order.orderId, "FAILED");
    expect(payment).toMatchObject({ failureReason: reason, attempts: 1 });
    const events = await p.eventsOf(order.orderId);
    expect(events.map((e) => e.subject)).toEqual([SUBJECTS.paymentFailed]);
    expect(events[0]?.event).toMatchObject({
      paymentId: payment.id,
      orderId: order.orderId,
      userId: order.userId,
      reason,
      retryable: false,
    });
  });

  it("retries tok_processingError with backoff, then fails after 3 attempts", async () => {
    const started = performance.now();
    const order = await p.placeOrder({ token: "tok_processingError" });
    const payment = await p.waitForPayment(order.orderId, "FAILED");
    // Two waits between three attempts: 100 ms, then 300 ms.
    expect(performance.now() - started).toBeGreaterThanOrEqual(400);
    expect(payment).toMatchObject({
      attempts: 3,
      failureReason: REASONS.processingError,
      providerReference: null,
    });
    expect(p.provider.chargeCalls(order.orderId)).toBe(3);
    const events = await p.eventsOf(order.orderId);
    expect(events.map((e) => e.subject)).toEqual([SUBJECTS.paymentFailed]);
    // A provider error, not a decline: placing the order again may succeed.
    expect(events[0]?.event).toMatchObject({ reason: REASONS.processingError, retryable: true });
  });

  it("charges an order once when OrderPlaced arrives twice, under another event id", async () => {
    const order = await p.placeOrder({ token: "tok_visa" });
    await p.waitForPayment(order.orderId, "CAPTURED");
    const again = await p.placeOrder({
      token: "tok_visa",
      orderId: order.orderId,
      userId: order.userId,
    });
    // A marker order published after the duplicate: once it is done, so is the duplicate.
    const marker = await p.placeOrder({ token: "tok_visa" });
    await p.waitForPayment(marker.orderId, "CAPTURED");

    expect(again.duplicate).toBe(false);
    expect(await p.paymentsOf(order.orderId)).toHaveLength(1);
    expect((await p.eventsOf(order.orderId)).map((e) => e.subject)).toEqual([
      SUBJECTS.paymentSucceeded,
    ]);
    expect(p.provider.chargeCalls(order.orderId)).toBe(1);
  });

  it("leaves a republished event id to JetStream's dedupe", async () => {
    const order = await p.placeOrder({ token: "tok_visa" });
    const again = await p.placeOrder({ token: "tok_visa", ...order });
    expect(again.duplicate).toBe(true);
    await p.waitForPayment(order.orderId, "CAPTURED");
    expect(await p.eventsOf(order.orderId)).toHaveLength(1);
  });

  it("completes a charge after a crash between charge and commit, charging once", async () => {
    const orderId = randomUUID();
    let crashes = 0;
    p.provider.onCharge(orderId, async (_req, next) => {
      const result = await next();
      // The process "dies" once after the money moved and before the transaction.
      if (crashes++ === 0) throw new Error("simulated crash after the charge");
      return result;
    });
    const order = await p.placeOrder({ token: "tok_visa", orderId });
    const payment = await p.waitForPayment(orderId, "CAPTURED");
    // Redelivered, charged again with the same idempotency key: the same single charge.
    expect(p.provider.chargeCalls(orderId)).toBe(2);
    expect([...p.provider.simulator.charges.keys()].filter((k) => k === orderId)).toHaveLength(1);
    expect(payment.providerReference).toBe(referenceFor("ch", orderId));
    expect(payment.attempts).toBe(2);
    expect((await p.eventsOf(order.orderId)).map((e) => e.subject)).toEqual([
      SUBJECTS.paymentSucceeded,
    ]);
  });

  it("captures a free order without calling the provider", async () => {
    const order = await p.placeOrder({ token: "tok_visa", amount: 0n });
    const payment = await p.waitForPayment(order.orderId, "CAPTURED");
    expect(payment).toMatchObject({ attempts: 0, providerReference: null });
    expect(p.provider.chargeCalls(order.orderId)).toBe(0);
    expect((await p.eventsOf(order.orderId))[0]?.event).toMatchObject({
      amount: { currencyCode: "USD", amount: 0n },
    });
  });

  it("fails an order whose total is unusable, without calling the provider", async () => {
    const order = await p.placeOrder({ token: "tok_visa", currencyCode: "dollars" });
    const payment = await p.waitForPayment(order.orderId, "FAILED");
    expect(payment.failureReason).toBe(REASONS.invalidTotal);
    expect(p.provider.chargeCalls(order.orderId)).toBe(0);
    expect((await p.eventsOf(order.orderId))[0]?.event).toMatchObject({
      reason: REASONS.invalidTotal,
      retryable: false,
    });
  });
});

describe("OrderPlaced handler, delivered directly", () => {
  // Redeliveries and replicas, made exact: the handler the consumer runs, called by hand.
  // As the consumer runs it: inside the delivery's event context (trace, request id).
  const handler = () => {
    const durable = `direct-${randomUUID()}`;
    const handle = createOrderPlacedHandler(
      { db: p.database.db, provider: p.provider.provider, logger },
      durable,
    );
    return (m: EventMessage) => runInEventContext(m, logger, durable, () => handle(m));
  };
  const message = (orderId: string, userId: string, eventId = randomUUID()): EventMessage => ({
    subject: SUBJECTS.orderPlaced,
    eventId,
    headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
    deliveryCount: 1,
    data: toBinary(
      OrderPlacedSchema,
      create(OrderPlacedSchema, {
        eventId,
        orderId,
        userId,
        total: { currencyCode: "USD", amount: 2_500n },
        paymentToken: "tok_visa",
      }),
    ),
  });

  it("applies the same event once when it is delivered again (a lost ack)", async () => {
    const handle = handler();
    const orderId = randomUUID();
    const msg = message(orderId, randomUUID());
    await handle(msg);
    await handle(msg);
    expect(await p.paymentsOf(orderId)).toEqual([expect.objectContaining({ status: "CAPTURED" })]);
    expect(p.provider.chargeCalls(orderId)).toBe(1);
    const events = await p.eventsOf(orderId);
    expect(events).toHaveLength(1);
    // The trace context of the incoming event travels on the event it caused.
    expect(events[0]?.headers["traceparent"]).toBe(msg.headers["traceparent"]);
  });

  it("skips messages no redelivery could fix instead of throwing", async () => {
    const garbage = { ...message(randomUUID(), randomUUID()), data: new Uint8Array([0xff, 0xff]) };
    await expect(handler()(garbage)).resolves.toBeUndefined();
    await expect(
      createOrderCancelledHandler(
        { db: p.database.db, provider: p.provider.provider, logger },
        `direct-${randomUUID()}`,
      )(garbage),
    ).resolves.toBeUndefined();
    const noOrderId = message("not-a-uuid", randomUUID());
    await expect(handler()(noOrderId)).resolves.toBeUndefined();
  });

  it("settles once when replicas handle the same order at the same time", async () => {
    const orderId = randomUUID();
    const userId = randomUUID();
    const replicas = [handler(), handler(), handler(), handler()];
    // Different event ids (orders published twice) and the same one (a redelivery).
    const shared = message(orderId, userId);
    await Promise.all([
      replicas[0]?.(shared),
      replicas[1]?.(shared),
      replicas[2]?.(message(orderId, userId)),
      replicas[3]?.(message(orderId, userId)),
    ]);
    const [payment, ...others] = await p.paymentsOf(orderId);
    expect(others).toHaveLength(0);
    expect(payment?.status).toBe("CAPTURED");
    expect((await p.eventsOf(orderId)).map((e) => e.subject)).toEqual([SUBJECTS.paymentSucceeded]);
    expect([...p.provider.simulator.charges.keys()].filter((k) => k === orderId)).toHaveLength(1);
  });
});

describe("OrderCancelled", () => {
  it("refunds a captured payment: REFUNDED and one PaymentRefunded", async () => {
    const order = await p.placeOrder({ token: "tok_visa", amount: 7_000n });
    const captured = await p.waitForPayment(order.orderId, "CAPTURED");
    await p.cancelOrder(order);
    const refunded = await p.waitForPayment(order.orderId, "REFUNDED");
    expect(refunded.refundReference).toBe(referenceFor("re", `refund:${order.orderId}`));
    expect(refunded.providerReference).toBe(captured.providerReference);
    // A second cancel (another event id) changes nothing.
    await p.cancelOrder(order);
    const marker = await p.placeOrder({ token: "tok_visa" });
    await p.cancelOrder(marker);
    await p.waitForPayment(marker.orderId, "REFUNDED");

    const events = await p.eventsOf(order.orderId);
    expect(events.map((e) => e.subject)).toEqual([
      SUBJECTS.paymentSucceeded,
      SUBJECTS.paymentRefunded,
    ]);
    expect(events[1]?.event).toMatchObject({
      paymentId: captured.id,
      orderId: order.orderId,
      userId: order.userId,
      amount: { currencyCode: "USD", amount: 7_000n },
    });
    expect(p.provider.simulator.refunds.has(`refund:${order.orderId}`)).toBe(true);
  });

  it("waits for a charge in flight, then refunds it", async () => {
    const orderId = randomUUID();
    p.provider.onCharge(orderId, async (_req, next) => {
      await new Promise((r) => setTimeout(r, 600));
      return next();
    });
    const order = await p.placeOrder({ token: "tok_visa", orderId });
    await p.waitForPayment(orderId, "PENDING");
    await p.cancelOrder(order);
    await p.waitForPayment(orderId, "REFUNDED");
    expect((await p.eventsOf(orderId)).map((e) => e.subject)).toEqual([
      SUBJECTS.paymentSucceeded,
      SUBJECTS.paymentRefunded,
    ]);
  });

  it("when the cancel overtakes OrderPlaced, the late OrderPlaced charges nothing", async () => {
    const order = { orderId: randomUUID(), userId: randomUUID() };
    await p.cancelOrder(order);
    const failed = await p.waitForPayment(order.orderId, "FAILED");
    expect(failed.failureReason).toBe(REASONS.cancelledBeforePayment);

    await p.placeOrder({ token: "tok_visa", ...order });
    const marker = await p.placeOrder({ token: "tok_visa" });
    await p.waitForPayment(marker.orderId, "CAPTURED");
    expect(await p.waitForPayment(order.orderId, "FAILED")).toMatchObject({
      attempts: 0,
      failureReason: REASONS.cancelledBeforePayment,
    });
    expect(p.provider.chargeCalls(order.orderId)).toBe(0);
    expect(await p.eventsOf(order.orderId)).toEqual([]);
  });

  it("does nothing for a failed payment", async () => {
    const order = await p.placeOrder({ token: "tok_chargeDeclined" });
    await p.waitForPayment(order.orderId, "FAILED");
    await p.cancelOrder(order);
    const marker = { orderId: randomUUID(), userId: randomUUID() };
    await p.cancelOrder(marker);
    await p.waitForPayment(marker.orderId, "FAILED");
    expect(await p.waitForPayment(order.orderId, "FAILED")).toMatchObject({
      failureReason: "card declined",
    });
    expect((await p.eventsOf(order.orderId)).map((e) => e.subject)).toEqual([
      SUBJECTS.paymentFailed,
    ]);
    expect(p.provider.simulator.refunds.has(`refund:${order.orderId}`)).toBe(false);
  });
});
