/**
 * NotificationService over real gRPC against a real database: ListNotifications (own
 * only, newest first, paging, auth) and WatchNotifications (live, per user, across
 * replicas, ending on client cancel and on server shutdown).
 */

import { randomUUID } from "node:crypto";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import {
  NotificationKind,
  NotificationService,
  NotificationStatus,
  type WatchNotificationsResponse,
} from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { OrderConfirmedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { Code } from "@shopmesh/runtime/errors.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createGrpcServer } from "@shopmesh/runtime/grpc-server.js";
import { rpcError } from "@shopmesh/runtime/testing.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openNotificationsDatabase } from "../src/db/database.js";
import { notifications } from "../src/db/schema.js";
import { createNotificationFeed } from "../src/feed.js";
import { createNotificationService } from "../src/service.js";
import { type Notifications, newUserId, startNotifications } from "./harness.js";

let n: Notifications;
beforeAll(async () => {
  n = await startNotifications();
});
afterAll(async () => {
  await n?.stop();
});

/** Records `count` ORDER_CONFIRMED notifications for `userId` through the event handler. */
async function confirmOrders(userId: string, count: number) {
  for (let i = 0; i < count; i++) {
    await n.handle("shop.orders.order_confirmed", OrderConfirmedSchema, {
      orderId: randomUUID(),
      userId,
      total: { currencyCode: "USD", amount: BigInt(100 + i) },
    });
  }
}

async function register(userId: string) {
  await n.handle("shop.identity.user_registered", UserRegisteredSchema, {
    userId,
    email: `${userId.slice(0, 8)}@example.com`,
    displayName: "Grace",
  });
}

describe("ListNotifications", () => {
  it("lists only the caller's notifications, newest first", async () => {
    const alice = newUserId();
    const bob = newUserId();
    await register(alice);
    await confirmOrders(alice, 2);
    await register(bob);
    await confirmOrders(bob, 1);

    const res = await n.client.listNotifications({}, await n.as(alice));
    expect(res.notifications).toHaveLength(3);
    expect(res.notifications.every((x) => x.userId === alice)).toBe(true);
    expect(res.nextPageToken).toBe("");
    // Newest first: (created_at, id) descending, as the table has them.
    const newestFirst = (await n.rowsOf(alice)).reverse().map((r) => r.id);
    expect(res.notifications.map((x) => x.id)).toEqual(newestFirst);
    const welcome = res.notifications.find((x) => x.kind === NotificationKind.WELCOME);
    expect(welcome).toMatchObject({
      kind: NotificationKind.WELCOME,
      status: NotificationStatus.SENT,
      recipient: `${alice.slice(0, 8)}@example.com`,
      orderId: "",
    });
    expect(welcome?.createTime).toBeDefined();
    const confirmed = res.notifications.filter((x) => x.kind === NotificationKind.ORDER_CONFIRMED);
    expect(confirmed).toHaveLength(2);
    expect(
      confirmed.every((x) => x.orderId !== "" && x.subject.includes(x.orderId.slice(0, 8))),
    ).toBe(true);
  });

  it("pages newest first with no gaps or repeats, 20 by default", async () => {
    const userId = newUserId();
    await register(userId);
    await confirmOrders(userId, 24);
    const expected = (await n.rowsOf(userId)).reverse().map((r) => r.id);
    expect(expected).toHaveLength(25);

    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const res = await n.client.listNotifications({ pageSize: 10, pageToken }, await n.as(userId));
      expect(res.notifications.length).toBeLessThanOrEqual(10);
      seen.push(...res.notifications.map((x) => x.id));
      pageToken = res.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(expected);

    const first = await n.client.listNotifications({}, await n.as(userId));
    expect(first.notifications).toHaveLength(20);
    expect(first.nextPageToken).not.toBe("");
    const all = await n.client.listNotifications({ pageSize: 100 }, await n.as(userId));
    expect(all.notifications).toHaveLength(25);
  });

  it("refuses page_size over 100 and a page token it did not issue", async () => {
    const userId = newUserId();
    const tooBig = await rpcError(
      n.client.listNotifications({ pageSize: 101 }, await n.as(userId)),
    );
    expect(tooBig.code).toBe(Code.INVALID_ARGUMENT);
    const forged = await rpcError(
      n.client.listNotifications({ pageToken: "bm90IGEgdG9rZW4" }, await n.as(userId)),
    );
    expect(forged.code).toBe(Code.INVALID_ARGUMENT);
    expect(forged.message).toContain("page_token");
  });

  it("is UNAUTHENTICATED without a token, or with one it cannot verify", async () => {
    const none = await rpcError(n.client.listNotifications({}));
    expect(none.code).toBe(Code.UNAUTHENTICATED);
    const bad = await rpcError(
      n.client.listNotifications({}, { headers: { authorization: "Bearer not.a.jwt" } }),
    );
    expect(bad.code).toBe(Code.UNAUTHENTICATED);
  });
});

/**
 * Collects a Watch stream in the background. `done` settles when the stream ends: with
 * the error it failed with, or undefined when it ended cleanly.
 */
function collect(stream: AsyncIterable<WatchNotificationsResponse>, stopAfter = Infinity) {
  const got: WatchNotificationsResponse[] = [];
  const done = (async () => {
    try {
      for await (const msg of stream) {
        got.push(msg);
        if (got.length >= stopAfter) break; // the client walks away
      }
      return undefined;
    } catch (err) {
      return err;
    }
  })();
  return { got, done };
}

describe("WatchNotifications", () => {
  it("streams the caller's new notifications, not another user's, and ends when the client stops", async () => {
    const alice = newUserId();
    const bob = newUserId();
    const before = n.feed.size();
    const watch = collect(n.client.watchNotifications({}, await n.as(alice)), 2);
    // No first message before something happens: wait until the server is listening.
    await expect.poll(() => n.feed.size()).toBe(before + 1);

    await register(bob); // recorded while Alice watches: must not reach her
    await register(alice);
    const orderId = randomUUID();
    await n.handle("shop.orders.order_confirmed", OrderConfirmedSchema, {
      orderId,
      userId: alice,
      total: { currencyCode: "USD", amount: 500n },
    });

    expect(await watch.done).toBeUndefined();
    expect(watch.got.map((m) => m.notification?.userId)).toEqual([alice, alice]);
    expect(watch.got.map((m) => m.notification?.kind)).toEqual([
      NotificationKind.WELCOME,
      NotificationKind.ORDER_CONFIRMED,
    ]);
    expect(watch.got[1]?.notification?.orderId).toBe(orderId);
    // The client broke out of its loop: the server side is gone too.
    await expect.poll(() => n.feed.size()).toBe(before);
  });

  it("hears notifications recorded by another replica, from events on NATS", async () => {
    // A second replica: its own pool, its own LISTEN connection, its own server.
    const database = await openNotificationsDatabase(n.databaseUrl);
    const feed = createNotificationFeed(database.sql, n.deps.logger);
    const server = createGrpcServer({
      logger: n.deps.logger,
      services: createNotificationService({ db: database.db, verifier: n.verifier, feed }),
    });
    const port = await server.listen(0, "127.0.0.1");
    const client = createGrpcClient(NotificationService, `127.0.0.1:${port}`);
    try {
      const userId = newUserId();
      const watch = collect(client.watchNotifications({}, await n.as(userId)));
      await expect.poll(() => feed.size()).toBe(1);
      // Consumed by the first replica's consumers, from the real stream.
      await n.publish("shop.identity.user_registered", UserRegisteredSchema, {
        userId,
        email: `${userId.slice(0, 8)}@example.com`,
      });
      await expect.poll(() => watch.got.length, { timeout: 20_000 }).toBe(1);
      expect(watch.got[0]?.notification).toMatchObject({
        userId,
        kind: NotificationKind.WELCOME,
      });

      // Shutting the replica down ends its streams cleanly.
      await server.shutdown();
      expect(await watch.done).toBeUndefined();
      expect(feed.size()).toBe(0);
    } finally {
      client.close();
      await server.shutdown();
      await database.close();
    }
  });

  it("survives its LISTEN connection dropping, and catches up on what it missed", async () => {
    const userId = newUserId();
    await register(userId); // before the stream opened: not replayed
    const before = n.feed.size();
    const watch = collect(n.client.watchNotifications({}, await n.as(userId)), 2);
    await expect.poll(() => n.feed.size()).toBe(before + 1);

    // Committed with nobody hearing it, as during a connection outage: no NOTIFY.
    const [missed] = await n.database.db
      .insert(notifications)
      .values({
        userId,
        kind: "PAYMENT_FAILED",
        subject: "missed while disconnected",
        body: "",
        eventId: randomUUID(),
      })
      .returning();
    // Postgres drops the LISTEN connection; postgres.js reconnects and listens again.
    const killed = await n.database.sql`
      select pg_terminate_backend(pid) from pg_stat_activity
      where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`;
    expect(killed).toHaveLength(1);
    await expect.poll(() => watch.got.length, { timeout: 10_000 }).toBe(1);
    expect(watch.got[0]?.notification?.id).toBe(missed?.id);

    // Live again on the new connection.
    await confirmOrders(userId, 1);
    expect(await watch.done).toBeUndefined();
    expect(watch.got.map((m) => m.notification?.kind)).toEqual([
      NotificationKind.PAYMENT_FAILED,
      NotificationKind.ORDER_CONFIRMED,
    ]);
  });

  it("is UNAUTHENTICATED without a token", async () => {
    const watch = collect(n.client.watchNotifications({}));
    const err = (await watch.done) as { code?: number } | undefined;
    expect(err?.code).toBe(Code.UNAUTHENTICATED);
    expect(watch.got).toEqual([]);
  });
});
