/**
 * Events in, notifications out, through the real NATS stream: each consumed event
 * makes the right notification, delivered locally (no SMTP_URL), exactly once.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
} from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import {
  PaymentFailedSchema,
  PaymentRefundedSchema,
} from "@shopmesh/gen/shop/payments/v1/events_pb.js";
import { type EventMessage, STREAM, startConsumer } from "@shopmesh/runtime/bus.js";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inbox, notifications } from "../src/db/schema.js";
import type { Delivery, OutgoingEmail } from "../src/delivery.js";
import { createDispatcher } from "../src/dispatcher.js";
import { createEventHandler, EVENT_ROUTES } from "../src/events.js";
import { type Notifications, newUserId, startNotifications } from "./harness.js";

let n: Notifications;
beforeAll(async () => {
  n = await startNotifications();
});
afterAll(async () => {
  await n?.stop();
});

/** A registered user (their UserRegistered consumed and welcomed), ready for order events. */
async function registeredUser(displayName = "Ada") {
  const userId = newUserId();
  const email = `${userId.slice(0, 8)}@example.com`;
  await n.publish("shop.identity.user_registered", UserRegisteredSchema, {
    userId,
    email,
    displayName,
  });
  const [welcome] = await n.waitForRows(userId, 1);
  return { userId, email, welcome };
}

/** The user's notification of `kind` once it reached a final status. */
async function delivered(userId: string, kind: string) {
  await expect
    .poll(async () => (await n.rowsOf(userId)).find((r) => r.kind === kind)?.status, {
      timeout: 20_000,
    })
    .toBe("SENT");
  const row = (await n.rowsOf(userId)).find((r) => r.kind === kind);
  if (row === undefined) throw new Error(`no ${kind}`);
  return row;
}

describe("consumed events", () => {
  it("UserRegistered: a WELCOME to the user's email, delivered locally (SENT, one attempt)", async () => {
    const { userId, email } = await registeredUser("Ada Lovelace");
    const welcome = await delivered(userId, "WELCOME");
    expect(welcome).toMatchObject({
      userId,
      kind: "WELCOME",
      channel: "EMAIL",
      recipient: email,
      orderId: null,
      status: "SENT",
    });
    expect(welcome.subject).toContain("Welcome");
    expect(welcome.body).toContain("Hi Ada Lovelace,");
    expect(welcome.sentAt).toBeInstanceOf(Date);
    const attempts = await n.attemptsOf(welcome.id);
    expect(attempts.map((a) => [a.attempt, a.outcome, a.error])).toEqual([[1, "SENT", null]]);
  });

  it("OrderConfirmed: ORDER_CONFIRMED naming the order, with the total formatted from minor units", async () => {
    const { userId, email } = await registeredUser();
    const orderId = randomUUID();
    await n.publish("shop.orders.order_confirmed", OrderConfirmedSchema, {
      orderId,
      userId,
      paymentId: randomUUID(),
      total: { currencyCode: "USD", amount: 123456n },
    });
    const row = await delivered(userId, "ORDER_CONFIRMED");
    expect(row.orderId).toBe(orderId);
    expect(row.recipient).toBe(email);
    expect(row.subject).toContain(orderId.slice(0, 8));
    expect(row.body).toContain("$1,234.56");
    expect(row.body).toContain(orderId);
  });

  it("OrderCancelled: ORDER_CANCELLED naming the order and saying why", async () => {
    const { userId } = await registeredUser();
    const orderId = randomUUID();
    await n.publish("shop.orders.order_cancelled", OrderCancelledSchema, {
      orderId,
      userId,
      reason: "cancelled_by_user",
      wasConfirmed: false,
    });
    const row = await delivered(userId, "ORDER_CANCELLED");
    expect(row.orderId).toBe(orderId);
    expect(row.subject).toContain(orderId.slice(0, 8));
    expect(row.subject).toContain("cancelled");
    expect(row.body).toContain("you cancelled it");
  });

  it("PaymentFailed: PAYMENT_FAILED naming the order and saying why", async () => {
    const { userId } = await registeredUser();
    const orderId = randomUUID();
    await n.publish("shop.payments.payment_failed", PaymentFailedSchema, {
      orderId,
      userId,
      paymentId: randomUUID(),
      reason: "card_declined",
      retryable: false,
    });
    const row = await delivered(userId, "PAYMENT_FAILED");
    expect(row.orderId).toBe(orderId);
    expect(row.subject).toContain(orderId.slice(0, 8));
    expect(row.body).toContain("the card was declined");
  });

  it("PaymentRefunded: PAYMENT_REFUNDED naming the order and the amount", async () => {
    const { userId } = await registeredUser();
    const orderId = randomUUID();
    await n.publish("shop.payments.payment_refunded", PaymentRefundedSchema, {
      orderId,
      userId,
      paymentId: randomUUID(),
      amount: { currencyCode: "EUR", amount: 4999n },
    });
    const row = await delivered(userId, "PAYMENT_REFUNDED");
    expect(row.orderId).toBe(orderId);
    expect(row.subject).toContain(orderId.slice(0, 8));
    expect(row.body).toContain("€49.99");
  });

  it("the same event published twice makes one notification", async () => {
    const { userId } = await registeredUser();
    const eventId = randomUUID();
    const event = { orderId: randomUUID(), userId, reason: "payment_failed" };
    const first = await n.publish(
      "shop.orders.order_cancelled",
      OrderCancelledSchema,
      event,
      eventId,
    );
    const second = await n.publish(
      "shop.orders.order_cancelled",
      OrderCancelledSchema,
      event,
      eventId,
    );
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    await delivered(userId, "ORDER_CANCELLED");
    // A later event of the same user arriving proves the consumer is past both.
    await n.publish("shop.payments.payment_refunded", PaymentRefundedSchema, {
      orderId: randomUUID(),
      userId,
      amount: { currencyCode: "USD", amount: 100n },
    });
    await delivered(userId, "PAYMENT_REFUNDED");
    const kinds = (await n.rowsOf(userId)).map((r) => r.kind).sort();
    expect(kinds).toEqual(["ORDER_CANCELLED", "PAYMENT_REFUNDED", "WELCOME"]);
  });

  it("an order event before the user's UserRegistered waits for the address, then is delivered", async () => {
    const userId = newUserId();
    const orderId = randomUUID();
    await n.publish("shop.orders.order_confirmed", OrderConfirmedSchema, {
      orderId,
      userId,
      total: { currencyCode: "JPY", amount: 1200n },
    });
    const [waiting] = await n.waitForRows(userId, 1);
    expect(waiting).toMatchObject({ kind: "ORDER_CONFIRMED", recipient: "", status: "PENDING" });
    expect(await n.attemptsOf(waiting?.id ?? "")).toEqual([]);

    const email = `late-${userId.slice(0, 8)}@example.com`;
    await n.publish("shop.identity.user_registered", UserRegisteredSchema, { userId, email });
    await delivered(userId, "WELCOME");
    const confirmed = await delivered(userId, "ORDER_CONFIRMED");
    expect(confirmed.recipient).toBe(email);
    expect(confirmed.body).toContain("¥1,200");
  });
});

describe("redelivery", () => {
  let r: Notifications;
  beforeAll(async () => {
    r = await startNotifications({ consumers: false });
  });
  afterAll(async () => {
    await r?.stop();
  });

  it("an event redelivered by JetStream after it was applied makes no second notification", async () => {
    const userRoute = EVENT_ROUTES.find((x) => x.name === "user_registered");
    if (userRoute === undefined) throw new Error("no user_registered route");
    const durable = `notifications-user_registered-redelivery-${randomBytes(4).toString("hex")}`;
    const handler = createEventHandler(r.deps, durable, userRoute);
    const userId = newUserId();
    const deliveries: number[] = [];
    // The real handler applies the event, then the ack is lost (the handler fails
    // afterwards), so JetStream delivers the event again.
    const consumer = await startConsumer({
      bus: r.bus,
      durable,
      subject: userRoute.subject,
      logger: r.deps.logger,
      backoffMs: [50],
      handler: async (msg: EventMessage) => {
        await handler(msg);
        // The stream is shared: other runs' registrations pass through here too.
        if (fromBinary(UserRegisteredSchema, msg.data).userId !== userId) return;
        deliveries.push(msg.deliveryCount);
        if (msg.deliveryCount === 1) throw new Error("lost ack");
      },
    });
    try {
      const { eventId } = await r.publish(userRoute.subject, UserRegisteredSchema, {
        userId,
        email: `${userId.slice(0, 8)}@example.com`,
      });
      await expect.poll(() => deliveries, { timeout: 20_000 }).toEqual([1, 2]);
      const rows = await r.rowsOf(userId);
      expect(rows).toHaveLength(1);
      expect(rows[0]?.status).toBe("SENT");
      expect(await r.attemptsOf(rows[0]?.id ?? "")).toHaveLength(1);
      const applied = await r.database.db.select().from(inbox).where(eq(inbox.eventId, eventId));
      expect(applied).toHaveLength(1);
    } finally {
      await consumer.stop();
      await r.bus.jsm.consumers.delete(STREAM, durable).catch(() => undefined);
    }
  });

  it("local delivery: inserted SENT with its attempt, handed to the channel once committed, once", async () => {
    const handed: OutgoingEmail[] = [];
    const recording: Delivery = {
      name: "recording",
      infallible: true,
      async send(message) {
        handed.push(message);
      },
      close() {},
    };
    const dispatcher = createDispatcher({
      db: r.database.db,
      delivery: recording,
      logger: r.deps.logger,
    });
    const local = { ...r.deps, dispatcher };
    expect(dispatcher.settlesAtInsert).toBe(true);

    // An order event before the user is known: PENDING, nothing handed.
    const userId = newUserId();
    const orderId = randomUUID();
    await r.handle(
      "shop.orders.order_confirmed",
      OrderConfirmedSchema,
      { orderId, userId, total: { currencyCode: "USD", amount: 500n } },
      randomUUID(),
      local,
    );
    expect((await r.rowsOf(userId)).map((x) => x.status)).toEqual(["PENDING"]);
    expect(handed).toEqual([]);

    // UserRegistered: the WELCOME inserted SENT, the waiting one marked SENT; both handed.
    const email = `${userId.slice(0, 8)}@example.com`;
    const registered = randomUUID();
    const register = () =>
      r.handle(
        "shop.identity.user_registered",
        UserRegisteredSchema,
        { userId, email },
        registered,
        local,
      );
    await register();
    const rows = await r.rowsOf(userId);
    expect(rows.map((x) => [x.kind, x.status])).toEqual([
      ["ORDER_CONFIRMED", "SENT"],
      ["WELCOME", "SENT"],
    ]);
    for (const row of rows) {
      expect(row.sentAt).toBeInstanceOf(Date);
      expect((await r.attemptsOf(row.id)).map((a) => [a.attempt, a.outcome])).toEqual([
        [1, "SENT"],
      ]);
    }
    expect(handed.map((m) => [m.kind, m.to, m.notificationId]).sort()).toEqual(
      rows.map((x) => [x.kind, email, x.id]).sort(),
    );
    const welcome = rows.find((x) => x.kind === "WELCOME");
    expect(handed.find((m) => m.kind === "WELCOME")).toMatchObject({
      subject: welcome?.subject,
      body: welcome?.body,
    });

    // A second event of a known user: inserted SENT and handed; redelivered, nothing more.
    const cancelled = randomUUID();
    const cancel = { orderId, userId, reason: "cancelled_by_user" };
    await r.handle("shop.orders.order_cancelled", OrderCancelledSchema, cancel, cancelled, local);
    await r.handle("shop.orders.order_cancelled", OrderCancelledSchema, cancel, cancelled, local);
    await register();
    expect(handed.map((m) => m.kind).sort()).toEqual([
      "ORDER_CANCELLED",
      "ORDER_CONFIRMED",
      "WELCOME",
    ]);
    const kinds = (await r.rowsOf(userId)).map((x) => [x.kind, x.status]);
    expect(kinds).toContainEqual(["ORDER_CANCELLED", "SENT"]);
    expect(kinds).toHaveLength(3);
  });

  it("a redelivered event whose delivery died after commit is delivered then, still once", async () => {
    const userId = newUserId();
    const crashing = {
      ...r.deps,
      dispatcher: {
        ...r.dispatcher,
        // A channel delivered after the commit (SMTP), and the process dies first.
        settlesAtInsert: false,
        settlement: () => undefined,
        deliver: () => Promise.reject(new Error("process died before delivering")),
      },
    };
    const init = { userId, email: `${userId.slice(0, 8)}@example.com` };
    const eventId = randomUUID();
    await expect(
      r.handle("shop.identity.user_registered", UserRegisteredSchema, init, eventId, crashing),
    ).rejects.toThrow("process died");
    expect((await r.rowsOf(userId)).map((x) => x.status)).toEqual(["PENDING"]);

    await r.handle("shop.identity.user_registered", UserRegisteredSchema, init, eventId);
    const rows = await r.rowsOf(userId);
    expect(rows.map((x) => x.status)).toEqual(["SENT"]);
    expect(await r.attemptsOf(rows[0]?.id ?? "")).toHaveLength(1);
  });

  it("the sweeper delivers what a crash left PENDING for over a minute", async () => {
    const userId = newUserId();
    const crashing = {
      ...r.deps,
      dispatcher: {
        ...r.dispatcher,
        // A channel delivered after the commit (SMTP), and the process dies first.
        settlesAtInsert: false,
        settlement: () => undefined,
        deliver: () => Promise.reject(new Error("process died before delivering")),
      },
    };
    const init = { userId, email: `${userId.slice(0, 8)}@example.com` };
    await expect(
      r.handle("shop.identity.user_registered", UserRegisteredSchema, init, randomUUID(), crashing),
    ).rejects.toThrow("process died");
    const [row] = await r.rowsOf(userId);
    expect(row?.status).toBe("PENDING");

    // Fresh PENDING rows are the event handler's business, not the sweeper's.
    await r.dispatcher.sweep();
    expect((await r.rowsOf(userId))[0]?.status).toBe("PENDING");

    await r.database.db
      .update(notifications)
      .set({ createdAt: sql`now() - interval '2 minutes'` })
      .where(eq(notifications.userId, userId));
    expect(await r.dispatcher.sweep()).toBeGreaterThanOrEqual(1);
    const [swept] = await r.rowsOf(userId);
    expect(swept?.status).toBe("SENT");
    expect(await r.attemptsOf(swept?.id ?? "")).toHaveLength(1);
  });

  it("an event that cannot be decoded is skipped, not retried, and changes nothing", async () => {
    const orderRoute = EVENT_ROUTES.find((x) => x.name === "order_confirmed");
    if (orderRoute === undefined) throw new Error("no order_confirmed route");
    const before = await r.database.db.select().from(notifications);
    const eventId = randomUUID();
    const handler = createEventHandler(r.deps, "notifications-order_confirmed-bad", orderRoute);
    await handler({
      subject: orderRoute.subject,
      data: new Uint8Array([0xff, 0xff, 0xff]),
      eventId,
      headers: {},
      deliveryCount: 1,
    });
    // Valid protobuf, but no user to notify.
    await r.handle("shop.orders.order_confirmed", OrderConfirmedSchema, {
      orderId: randomUUID(),
      userId: "not-a-uuid",
    });
    const applied = await r.database.db.select().from(inbox).where(eq(inbox.eventId, eventId));
    expect(applied).toEqual([]);
    expect(await r.database.db.select().from(notifications)).toEqual(before);
  });
});
