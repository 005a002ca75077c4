/**
 * GetOrder, ListOrders and CancelOrder over real gRPC: who sees which order, paging
 * and filters, and cancelling (stock back in the catalog, OrderCancelled, history).
 */

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { OrderStatus } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { Code } from "@shopmesh/runtime/errors.js";
import type { CallOptions } from "@shopmesh/runtime/grpc-client.js";
import { rpcError } from "@shopmesh/runtime/testing.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ORDER_CANCELLED } from "../src/state-machine.js";
import { type Stack, startStack } from "./harness.js";

let s: Stack;
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});

async function place(auth: CallOptions, quantity = 1, stock = 10) {
  const product = await s.insertProduct({ stock });
  const { order } = await s.client.placeOrder(
    { items: [{ productId: product.id, quantity }], paymentToken: "tok_visa" },
    auth,
  );
  if (order === undefined) throw new Error("no order");
  return { order, product };
}

describe("GetOrder", () => {
  it("shows the owner and admins the order, and nobody else", async () => {
    const alice = await s.customer();
    const bob = await s.customer();
    const { order } = await place(alice.auth);

    const own = await s.client.getOrder({ orderId: order.id }, alice.auth);
    expect(own.order).toEqual(order);

    const admin = await s.admin();
    expect((await s.client.getOrder({ orderId: order.id }, admin.auth)).order?.id).toBe(order.id);

    // Same answer as for an order that does not exist: existence is not revealed.
    const theirs = await rpcError(s.client.getOrder({ orderId: order.id }, bob.auth));
    expect(theirs.code).toBe(Code.NOT_FOUND);
    const missingId = "00000000-0000-4000-8000-000000000001";
    const missing = await rpcError(s.client.getOrder({ orderId: missingId }, bob.auth));
    expect(missing.code).toBe(Code.NOT_FOUND);
    expect(theirs.message).toBe(`order ${order.id} not found`);
    expect(missing.message).toBe(`order ${missingId} not found`);
  });

  it("answers UNAUTHENTICATED without a token", async () => {
    const { auth } = await s.customer();
    const { order } = await place(auth);
    expect((await rpcError(s.client.getOrder({ orderId: order.id }))).code).toBe(
      Code.UNAUTHENTICATED,
    );
  });
});

describe("ListOrders", () => {
  it("lists the caller's own orders newest first, page by page", async () => {
    const { auth } = await s.customer();
    const other = await s.customer();
    await place(other.auth);
    const placed = [];
    for (let i = 0; i < 5; i++) placed.push((await place(auth)).order.id);

    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const res = await s.client.listOrders({ pageSize: 2, pageToken }, auth);
      expect(res.orders.length).toBeLessThanOrEqual(2);
      seen.push(...res.orders.map((o) => o.id));
      pageToken = res.nextPageToken;
      pages++;
    } while (pageToken !== "");
    expect(seen).toEqual([...placed].reverse());
    expect(pages).toBe(3);
  });

  it("filters by status", async () => {
    const { auth } = await s.customer();
    const a = (await place(auth)).order;
    const b = (await place(auth)).order;
    await s.client.cancelOrder({ orderId: a.id }, auth);

    const cancelled = await s.client.listOrders({ status: OrderStatus.CANCELLED }, auth);
    expect(cancelled.orders.map((o) => o.id)).toEqual([a.id]);
    const pending = await s.client.listOrders({ status: OrderStatus.PENDING_PAYMENT }, auth);
    expect(pending.orders.map((o) => o.id)).toEqual([b.id]);
    // Items and history come with every listed order.
    expect(pending.orders[0]?.items).toHaveLength(1);
    expect(cancelled.orders[0]?.history).toHaveLength(2);
  });

  it("lets admins list everyone's orders or one user's; customers only their own", async () => {
    const alice = await s.customer();
    const bob = await s.customer();
    const aliceOrder = (await place(alice.auth)).order;
    const bobOrder = (await place(bob.auth)).order;
    const admin = await s.admin();

    const all = await s.client.listOrders({ pageSize: 100 }, admin.auth);
    const allIds = all.orders.map((o) => o.id);
    expect(allIds).toContain(aliceOrder.id);
    expect(allIds).toContain(bobOrder.id);
    expect(allIds.indexOf(bobOrder.id)).toBeLessThan(allIds.indexOf(aliceOrder.id));

    const onlyBob = await s.client.listOrders({ userId: bob.userId }, admin.auth);
    expect(onlyBob.orders.map((o) => o.id)).toEqual([bobOrder.id]);

    const own = await s.client.listOrders({ userId: alice.userId }, alice.auth);
    expect(own.orders.map((o) => o.id)).toEqual([aliceOrder.id]);
    const snooping = await rpcError(s.client.listOrders({ userId: bob.userId }, alice.auth));
    expect(snooping.code).toBe(Code.PERMISSION_DENIED);
  });

  it("refuses a page token that is forged or was issued for another filter", async () => {
    const { auth } = await s.customer();
    await place(auth);
    await place(auth);
    const first = await s.client.listOrders({ pageSize: 1 }, auth);
    expect(first.nextPageToken).not.toBe("");

    const otherFilter = await rpcError(
      s.client.listOrders(
        { pageSize: 1, pageToken: first.nextPageToken, status: OrderStatus.CONFIRMED },
        auth,
      ),
    );
    expect(otherFilter.code).toBe(Code.INVALID_ARGUMENT);
    const forged = await rpcError(s.client.listOrders({ pageToken: "bm90LWEtdG9rZW4" }, auth));
    expect(forged.code).toBe(Code.INVALID_ARGUMENT);
    expect(forged.message).toBe("invalid page_token");
  });
});

describe("CancelOrder", () => {
  it("cancels a pending order: stock back, OrderCancelled, history with times", async () => {
    const { userId, auth } = await s.customer();
    const { order, product } = await place(auth, 3, 5);
    expect(await s.stockOf(product.id)).toBe(2);

    const { order: cancelled } = await s.client.cancelOrder(
      { orderId: order.id, reason: "changed my mind" },
      auth,
    );
    expect(cancelled?.status).toBe(OrderStatus.CANCELLED);
    expect(cancelled?.cancelReason).toBe("changed my mind");
    expect(await s.stockOf(product.id)).toBe(5);
    expect(await s.heldReservations(product.id)).toEqual([]);

    const events = await s.outboxEventsOf(order.id, ORDER_CANCELLED);
    expect(events.map((e) => e.event)).toMatchObject([
      { orderId: order.id, userId, reason: "changed my mind", wasConfirmed: false },
    ]);

    const history = cancelled?.history ?? [];
    expect(history.map((h) => [h.status, h.reason])).toEqual([
      [OrderStatus.PENDING_PAYMENT, ""],
      [OrderStatus.CANCELLED, "changed my mind"],
    ]);
    const times = history.map((h) => (h.changeTime ? timestampDate(h.changeTime).getTime() : 0));
    expect(times[0]).toBeGreaterThan(Date.now() - 60_000);
    expect(times[1]).toBeGreaterThanOrEqual(times[0] ?? Number.POSITIVE_INFINITY);

    // GetOrder tells the same story.
    expect((await s.client.getOrder({ orderId: order.id }, auth)).order).toEqual(cancelled);
  });

  it("returns a cancelled order unchanged when cancelled again", async () => {
    const { auth } = await s.customer();
    const { order, product } = await place(auth, 2, 5);
    const first = await s.client.cancelOrder({ orderId: order.id, reason: "first" }, auth);
    const again = await s.client.cancelOrder({ orderId: order.id, reason: "second" }, auth);
    expect(again.order).toEqual(first.order);
    expect(again.order?.cancelReason).toBe("first");
    expect(await s.outboxEventsOf(order.id, ORDER_CANCELLED)).toHaveLength(1);
    expect(await s.stockOf(product.id)).toBe(5);
  });

  it("changes nothing while the catalog is down (UNAVAILABLE), and works when retried", async () => {
    const { auth } = await s.customer();
    const { order, product } = await place(auth, 2, 5);
    await s.catalogDown();
    try {
      const err = await rpcError(s.client.cancelOrder({ orderId: order.id }, auth));
      expect(err.code).toBe(Code.UNAVAILABLE);
    } finally {
      await s.catalogUp();
    }
    const unchanged = (await s.client.getOrder({ orderId: order.id }, auth)).order;
    expect(unchanged).toEqual(order);
    expect(await s.outboxEventsOf(order.id, ORDER_CANCELLED)).toHaveLength(0);

    // The client's channel reconnects with backoff: retry until the catalog answers.
    await expect
      .poll(
        async () =>
          (await s.client.cancelOrder({ orderId: order.id }, auth).catch(() => undefined))?.order
            ?.status,
        { timeout: 10_000, interval: 200 },
      )
      .toBe(OrderStatus.CANCELLED);
    expect(await s.stockOf(product.id)).toBe(5);
    expect(await s.outboxEventsOf(order.id, ORDER_CANCELLED)).toHaveLength(1);
  });

  it("is for the owner and admins only; another customer gets NOT_FOUND", async () => {
    const alice = await s.customer();
    const bob = await s.customer();
    const { order, product } = await place(alice.auth, 1, 3);

    const err = await rpcError(s.client.cancelOrder({ orderId: order.id }, bob.auth));
    expect(err.code).toBe(Code.NOT_FOUND);
    expect((await s.client.getOrder({ orderId: order.id }, alice.auth)).order?.status).toBe(
      OrderStatus.PENDING_PAYMENT,
    );
    expect(await s.stockOf(product.id)).toBe(2);

    const admin = await s.admin();
    const { order: cancelled } = await s.client.cancelOrder({ orderId: order.id }, admin.auth);
    expect(cancelled?.status).toBe(OrderStatus.CANCELLED);
    expect(cancelled?.cancelReason).toBe("cancelled by admin");
    expect(await s.stockOf(product.id)).toBe(3);
  });
});
