/**
 * Delivery by email through nodemailer to a real (tiny, in-test) SMTP server: what
 * arrives, and what happens when the server refuses or hangs — retries with attempt
 * rows, then FAILED, the notification still listed, and the handler never stuck.
 *
 * Events go through the service's own handler directly (no NATS): a consumer would
 * also replay every older event of the shared stream into the mail server.
 */
import { randomUUID } from "node:crypto";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import {
  NotificationKind,
  NotificationStatus,
} from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { PaymentFailedSchema } from "@shopmesh/gen/shop/payments/v1/events_pb.js";
import { afterEach, describe, expect, it } from "vitest";
import { DeliveryInterruptedError } from "../src/dispatcher.js";
import {
  type HarnessOptions,
  type Notifications,
  newUserId,
  startNotifications,
} from "./harness.js";
import { startSmtpServer } from "./smtp-server.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setUp(
  mode: "accept" | "refuse" | "silent",
  dispatcher: HarnessOptions["dispatcher"] = {},
) {
  const smtp = await startSmtpServer(mode);
  cleanups.push(() => smtp.close());
  const n = await startNotifications({ smtpUrl: smtp.url, consumers: false, dispatcher });
  cleanups.push(() => n.stop());
  return { smtp, n };
}

function registration(userId: string) {
  return { userId, email: `${userId.slice(0, 8)}@example.com`, displayName: "Ada" };
}

async function onlyRow(n: Notifications, userId: string) {
  const rows = await n.rowsOf(userId);
  expect(rows).toHaveLength(1);
  const row = rows[0];
  if (row === undefined) throw new Error("no notification");
  return row;
}

describe("SMTP delivery", () => {
  it("emails the notification to the user's address with its subject", async () => {
    const { smtp, n } = await setUp("accept");
    const userId = newUserId();
    await n.handle("shop.identity.user_registered", UserRegisteredSchema, registration(userId));
    const orderId = randomUUID();
    await n.handle("shop.payments.payment_failed", PaymentFailedSchema, {
      userId,
      orderId,
      reason: "insufficient_funds",
    });

    expect(smtp.messages).toHaveLength(2);
    const [welcome, failed] = smtp.messages;
    expect(welcome?.to).toEqual([`${userId.slice(0, 8)}@example.com`]);
    expect(welcome?.from).toBe("no-reply@shopmesh.local");
    expect(welcome?.headers["subject"]).toBe("Welcome to shopmesh");
    expect(welcome?.headers["to"]).toContain(`${userId.slice(0, 8)}@example.com`);
    expect(welcome?.headers["from"]).toBe("shopmesh <no-reply@shopmesh.local>");
    expect(failed?.headers["subject"]).toContain(orderId.slice(0, 8));
    expect(failed?.data).toContain("insufficient funds");

    const rows = await n.rowsOf(userId);
    expect(rows.map((r) => r.status)).toEqual(["SENT", "SENT"]);
    expect(welcome?.headers["x-shopmesh-notification-id"]).toBe(rows[0]?.id);
    for (const row of rows) {
      expect((await n.attemptsOf(row.id)).map((a) => a.outcome)).toEqual(["SENT"]);
    }
  });

  it("a server that refuses: three tries with attempt rows, then FAILED, still listed", async () => {
    const { smtp, n } = await setUp("refuse");
    const userId = newUserId();
    await n.handle("shop.identity.user_registered", UserRegisteredSchema, registration(userId));

    const row = await onlyRow(n, userId);
    expect(row.status).toBe("FAILED");
    expect(row.sentAt).toBeNull();
    const attempts = await n.attemptsOf(row.id);
    expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([
      [1, "FAILED"],
      [2, "FAILED"],
      [3, "FAILED"],
    ]);
    expect(attempts.every((a) => a.error?.includes("554"))).toBe(true);
    expect(smtp.connections()).toBe(3);

    const listed = await n.client.listNotifications({}, await n.as(userId));
    expect(listed.notifications.map((x) => [x.kind, x.status])).toEqual([
      [NotificationKind.WELCOME, NotificationStatus.FAILED],
    ]);
  });

  it("a server that never answers does not hold the event handler: timeouts, then FAILED", async () => {
    const { n } = await setUp("silent", { attemptTimeoutMs: 300 });
    const userId = newUserId();
    const started = performance.now();
    await n.handle("shop.identity.user_registered", UserRegisteredSchema, registration(userId));
    expect(performance.now() - started).toBeLessThan(5_000);

    const row = await onlyRow(n, userId);
    expect(row.status).toBe("FAILED");
    const attempts = await n.attemptsOf(row.id);
    expect(attempts).toHaveLength(3);
    expect(attempts[0]?.error).toContain("no answer within 300 ms");
  });

  it("shutdown between tries leaves the notification PENDING for the event's redelivery", async () => {
    const { n } = await setUp("refuse", { backoffMs: [10_000] });
    const userId = newUserId();
    const init = registration(userId);
    const eventId = randomUUID();
    const handling = n.handle("shop.identity.user_registered", UserRegisteredSchema, init, eventId);
    const settled = handling.catch((err: unknown) => err);
    // The first try has failed and the dispatcher is waiting out its backoff.
    await expect
      .poll(async () => {
        const [row] = await n.rowsOf(userId);
        return row === undefined ? 0 : (await n.attemptsOf(row.id)).length;
      })
      .toBe(1);
    n.dispatcher.stop();
    expect(await settled).toBeInstanceOf(DeliveryInterruptedError);

    const row = await onlyRow(n, userId);
    expect(row.status).toBe("PENDING");
    expect(row.leaseUntil).toBeNull();
  });
});
