/**
 * PlaceOrder over real gRPC, against the real identity and catalog and a real
 * database and JetStream: pricing from the catalog, OrderPlaced through the outbox
 * to the bus, idempotency (also under concurrency), and failures that write nothing.
 */

import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { OrderStatus, PlaceOrderRequestSchema } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import type { Claims } from "@shopmesh/runtime/auth.js";
import { loadConfig } from "@shopmesh/runtime/config.js";
import { Code } from "@shopmesh/runtime/errors.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { bearer, rpcError } from "@shopmesh/runtime/testing.js";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ordersEnv } from "../src/config.js";
import { placements } from "../src/db/schema.js";
import { type IdentityClient, type InventoryClient, userCheck } from "../src/downstream.js";
import { orderIdFor, orderRecorder, placementNoter, placeOrder } from "../src/place-order.js";
import { sweepPlacements } from "../src/placement-sweeper.js";
import { ORDER_PLACED } from "../src/state-machine.js";
import { type Stack, startStack } from "./harness.js";

let s: Stack;
const quiet = createLogger("orders-test", "silent");
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});

describe("PlaceOrder", () => {
  it("leaves the order PENDING_PAYMENT, priced by the catalog, and publishes OrderPlaced", async () => {
    const { userId, auth } = await s.customer();
    const mug = await s.insertProduct({ name: "Mug", priceAmount: 1250n, stock: 5 });
    const tee = await s.insertProduct({ name: "Tee", priceAmount: 1999n, stock: 3 });

    const { order } = await s.client.placeOrder(
      {
        items: [
          { productId: mug.id, quantity: 2 },
          { productId: tee.id, quantity: 1 },
        ],
        paymentToken: "tok_visa",
      },
      auth,
    );

    expect(order?.status).toBe(OrderStatus.PENDING_PAYMENT);
    expect(order?.userId).toBe(userId);
    expect(order?.items).toMatchObject([
      {
        productId: mug.id,
        sku: mug.sku,
        name: "Mug",
        quantity: 2,
        unitPrice: { currencyCode: "USD", amount: 1250n },
        lineTotal: { currencyCode: "USD", amount: 2500n },
      },
      {
        productId: tee.id,
        sku: tee.sku,
        name: "Tee",
        quantity: 1,
        unitPrice: { currencyCode: "USD", amount: 1999n },
        lineTotal: { currencyCode: "USD", amount: 1999n },
      },
    ]);
    expect(order?.total).toMatchObject({ currencyCode: "USD", amount: 4499n });
    // What was stored is what was answered: the lines read back equal them.
    const stored = await s.client.getOrder({ orderId: order?.id ?? "" }, auth);
    expect(stored.order?.items).toEqual(order?.items);
    expect(order?.history.map((h) => h.status)).toEqual([OrderStatus.PENDING_PAYMENT]);
    expect(order?.paymentId).toBe("");
    expect(await s.stockOf(mug.id)).toBe(3);
    expect(await s.stockOf(tee.id)).toBe(2);

    const id = order?.id ?? "";
    const [placed, ...more] = await s.outboxEventsOf(id, ORDER_PLACED);
    expect(more).toHaveLength(0);
    expect(placed?.event).toMatchObject({
      orderId: id,
      userId,
      total: { currencyCode: "USD", amount: 4499n },
      paymentToken: "tok_visa",
      items: [
        { productId: mug.id, quantity: 2, lineTotal: { amount: 2500n } },
        { productId: tee.id, quantity: 1, lineTotal: { amount: 1999n } },
      ],
    });
    expect(placed?.event.eventId).toBe(placed?.row.id);

    // Through the relay to JetStream, and read back by a durable consumer.
    await expect
      .poll(() => s.publishedEventsOf(id, ORDER_PLACED).length, { timeout: 10_000 })
      .toBe(1);
    const [onBus] = s.publishedEventsOf(id, ORDER_PLACED);
    expect(onBus?.eventId).toBe(placed?.row.id);
    expect(onBus?.event.total?.amount).toBe(4499n);
  });

  it("returns the first order for a repeated idempotency key, reserving once", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 10 });
    const req = {
      items: [{ productId: p.id, quantity: 3 }],
      paymentToken: "tok_visa",
      idempotencyKey: "checkout-1",
    };
    const first = await s.client.placeOrder(req, auth);
    const again = await s.client.placeOrder(req, auth);
    expect(again.order?.id).toBe(first.order?.id);
    expect(await s.stockOf(p.id)).toBe(7);
    expect(await s.orderRowsOf(userId)).toHaveLength(1);
    expect(await s.outboxEventsOf(first.order?.id ?? "", ORDER_PLACED)).toHaveLength(1);

    // The key is per user: another user's same key is another order.
    const other = await s.customer();
    const theirs = await s.client.placeOrder(req, other.auth);
    expect(theirs.order?.id).not.toBe(first.order?.id);
    expect(await s.stockOf(p.id)).toBe(4);
  });

  it("reuses the reservation of an attempt that died between ReserveStock and its commit", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 10 });
    const key = "crash-then-retry";
    const items = [{ productId: p.id, quantity: 4 }];
    // The attempt that died: its reservation, under the order id of (user, key), no order.
    await s.inventory.reserveStock({ orderId: orderIdFor(userId, key), items });
    expect(await s.stockOf(p.id)).toBe(6);

    const { order } = await s.client.placeOrder(
      { items, paymentToken: "tok_visa", idempotencyKey: key },
      auth,
    );
    expect(order?.id).toBe(orderIdFor(userId, key));
    expect(await s.stockOf(p.id)).toBe(6); // reserved once
    expect(await s.heldReservations(p.id)).toEqual([order?.id]);
  });

  it("places one order for concurrent requests with the same key, on one reservation", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 20 });
    const req = {
      items: [{ productId: p.id, quantity: 2 }],
      paymentToken: "tok_visa",
      idempotencyKey: "double-click",
    };
    const results = await Promise.all(
      Array.from({ length: 6 }, () => s.client.placeOrder(req, auth)),
    );
    const ids = new Set(results.map((r) => r.order?.id));
    expect(ids.size).toBe(1);
    const [id] = [...ids];
    expect(await s.orderRowsOf(userId)).toHaveLength(1);
    expect(await s.outboxEventsOf(id ?? "", ORDER_PLACED)).toHaveLength(1);
    // Requests that raced past the first lookup reserved under the same order id (the
    // catalog handed back the one reservation) and lost on the insert: nothing released.
    expect(await s.heldReservations(p.id)).toEqual([id]);
    expect(await s.releasedReservations(p.id)).toEqual([]);
    expect(await s.stockOf(p.id)).toBe(18);
  });

  it("records orders reserved at the same time in one transaction; a swept one fails alone", async () => {
    const { userId } = await s.customer();
    const p = await s.insertProduct({ stock: 50 });
    let open: () => void = () => undefined;
    let gate = new Promise<void>((r) => {
      open = r;
    });
    const reserved: string[] = [];
    const released: string[] = [];
    // The catalog answers every reservation at the same moment, when the gate opens.
    const inventory = {
      reserveStock: (async (req: { orderId: string }) => {
        reserved.push(req.orderId);
        await gate;
        const unitPrice = { currencyCode: "USD", amount: 500n };
        const line = { productId: p.id, sku: p.sku, name: p.name, quantity: 1, unitPrice };
        return { orderId: req.orderId, lines: [line] };
      }) as unknown as InventoryClient["reserveStock"],
      releaseStock: (async (req: { orderId: string }) => {
        released.push(req.orderId);
        return { released: true };
      }) as unknown as InventoryClient["releaseStock"],
    };
    const deps = {
      db: s.ordersDb,
      checkUser: async () => undefined,
      inventory,
      notePlacement: placementNoter(s.ordersDb),
      recordOrder: orderRecorder(s.ordersDb),
    };
    const claims = { sub: userId, roles: ["customer"] } as unknown as Claims;
    const place = () =>
      placeOrder(
        deps,
        claims,
        create(PlaceOrderRequestSchema, {
          items: [{ productId: p.id, quantity: 1 }],
          paymentToken: "tok_visa",
        }),
        quiet,
      );

    // Eight at once: the first is recorded alone, the seven that came meanwhile together.
    const eight = Array.from({ length: 8 }, place);
    await expect.poll(() => reserved.length).toBe(8);
    open();
    const views = await Promise.all(eight);
    expect(new Set(views.map((v) => v.order.id)).size).toBe(8);
    const rows = await s.orderRowsOf(userId);
    expect(rows).toHaveLength(8);
    expect(new Set(rows.map((r) => r.createdAt.getTime())).size).toBeLessThanOrEqual(2);
    for (const v of views) expect(await s.outboxEventsOf(v.order.id, ORDER_PLACED)).toHaveLength(1);

    // Three at once, and the sweeper took one placement meanwhile: that one fails alone
    // (ABORTED, its stock given back), the other two are recorded.
    reserved.length = 0;
    gate = new Promise<void>((r) => {
      open = r;
    });
    const three = Array.from({ length: 3 }, place);
    await expect.poll(() => reserved.length).toBe(3);
    const swept = reserved[2] as string;
    await s.ordersDb.delete(placements).where(eq(placements.orderId, swept));
    open();
    const results = await Promise.allSettled(three);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(2);
    const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(failed.reason).toMatchObject({ code: Code.ABORTED });
    expect(released).toEqual([swept]);
    expect(await s.orderRowsOf(userId)).toHaveLength(10);
  });

  it("answers NOT_FOUND for an unknown product and writes nothing", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 5 });
    const missing = "00000000-0000-4000-8000-000000000000";
    const outboxBefore = await s.outboxCount();
    const err = await rpcError(
      s.client.placeOrder(
        {
          items: [
            { productId: p.id, quantity: 1 },
            { productId: missing, quantity: 1 },
          ],
          paymentToken: "tok_visa",
        },
        auth,
      ),
    );
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toBe(`product ${missing} not found`);
    expect(await s.orderRowsOf(userId)).toHaveLength(0);
    expect(await s.outboxCount()).toBe(outboxBefore);
    expect(await s.stockOf(p.id)).toBe(5);
    expect(await s.heldReservations(p.id)).toEqual([]);
  });

  it("answers FAILED_PRECONDITION for more than in stock and writes nothing", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 2 });
    const outboxBefore = await s.outboxCount();
    const err = await rpcError(
      s.client.placeOrder(
        { items: [{ productId: p.id, quantity: 3 }], paymentToken: "tok_visa" },
        auth,
      ),
    );
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toBe(`insufficient stock for ${p.sku} (${p.id}): requested 3, available 2`);
    expect(await s.orderRowsOf(userId)).toHaveLength(0);
    expect(await s.outboxCount()).toBe(outboxBefore);
    expect(await s.stockOf(p.id)).toBe(2);
  });

  it("answers INVALID_ARGUMENT for quantity 0, before reserving anything", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 2 });
    const err = await rpcError(
      s.client.placeOrder(
        { items: [{ productId: p.id, quantity: 0 }], paymentToken: "tok_visa" },
        auth,
      ),
    );
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain("quantity");
    expect(await s.orderRowsOf(userId)).toHaveLength(0);
    expect(await s.heldReservations(p.id)).toEqual([]);
  });

  it("refuses lines in different currencies and gives the reserved stock back", async () => {
    const { userId, auth } = await s.customer();
    const usd = await s.insertProduct({ stock: 4, currencyCode: "USD" });
    const eur = await s.insertProduct({ stock: 4, currencyCode: "EUR" });
    const err = await rpcError(
      s.client.placeOrder(
        {
          items: [
            { productId: usd.id, quantity: 1 },
            { productId: eur.id, quantity: 1 },
          ],
          paymentToken: "tok_visa",
        },
        auth,
      ),
    );
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toMatch(/different currencies \((USD, EUR|EUR, USD)\)/);
    expect(await s.orderRowsOf(userId)).toHaveLength(0);
    // The catalog had reserved both lines; the compensation released them.
    expect(await s.stockOf(usd.id)).toBe(4);
    expect(await s.stockOf(eur.id)).toBe(4);
    expect(await s.heldReservations(usd.id)).toEqual([]);
  });

  it("answers NOT_FOUND when identity no longer knows the user, before reserving", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 2 });
    await s.deleteUser(userId);
    const err = await rpcError(
      s.client.placeOrder(
        { items: [{ productId: p.id, quantity: 1 }], paymentToken: "tok_visa" },
        auth,
      ),
    );
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toBe(`user ${userId} not found`);
    expect(await s.stockOf(p.id)).toBe(2);
    expect(await s.orderRowsOf(userId)).toHaveLength(0);
  });

  it("asks identity once per user while its yes is remembered (USER_CHECK_TTL_MS)", async () => {
    const p = await s.insertProduct({ stock: 10 });
    const req = { items: [{ productId: p.id, quantity: 1 }], paymentToken: "tok_visa" };
    const a = await s.customer();
    const b = await s.customer();
    const before = s.identityGetUserCalls();
    await s.client.placeOrder(req, a.auth);
    await s.client.placeOrder(req, a.auth);
    await s.client.placeOrder(req, a.auth);
    expect(s.identityGetUserCalls() - before).toBe(1);
    await s.client.placeOrder(req, b.auth);
    expect(s.identityGetUserCalls() - before).toBe(2);
    expect(await s.stockOf(p.id)).toBe(6);
  });

  it("userCheck: a yes expires after its ttl; a no is never remembered; ttl 0 always asks", async () => {
    const known = await s.customer();
    const gone = await s.customer();
    await s.deleteUser(gone.userId);
    let calls = 0;
    const counting = (auth: typeof known.auth): IdentityClient => ({
      getUser: ((req: { userId: string }) => {
        calls++;
        return s.identityClient.getUser(req, auth);
      }) as IdentityClient["getUser"],
    });

    const remembering = userCheck(counting(known.auth), 150);
    await remembering(known.userId);
    await remembering(known.userId);
    expect(calls).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    await remembering(known.userId);
    expect(calls).toBe(2);

    const forGone = userCheck(counting(gone.auth), 60_000);
    for (let i = 0; i < 2; i++) {
      await expect(forGone(gone.userId)).rejects.toMatchObject({
        code: Code.NOT_FOUND,
        message: `user ${gone.userId} not found`,
      });
    }
    expect(calls).toBe(4);

    const always = userCheck(counting(known.auth), 0);
    await always(known.userId);
    await always(known.userId);
    expect(calls).toBe(6);
  });

  it("answers UNAVAILABLE while the catalog is down, and writes nothing", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 2 });
    await s.catalogDown();
    try {
      const err = await rpcError(
        s.client.placeOrder(
          { items: [{ productId: p.id, quantity: 1 }], paymentToken: "tok_visa" },
          auth,
        ),
      );
      expect(err.code).toBe(Code.UNAVAILABLE);
      expect(err.message).toBe("catalog is unavailable; try again");
    } finally {
      await s.catalogUp();
    }
    expect(await s.orderRowsOf(userId)).toHaveLength(0);
    expect(await s.stockOf(p.id)).toBe(2);
  });

  it("answers UNAUTHENTICATED without a token or with a forged one", async () => {
    const p = await s.insertProduct({ stock: 2 });
    const req = { items: [{ productId: p.id, quantity: 1 }], paymentToken: "tok_visa" };
    expect((await rpcError(s.client.placeOrder(req))).code).toBe(Code.UNAUTHENTICATED);
    const forged = bearer("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln");
    expect((await rpcError(s.client.placeOrder(req, forged))).code).toBe(Code.UNAUTHENTICATED);
    expect(await s.stockOf(p.id)).toBe(2);
  });
});

describe("orphaned stock reservations (the placement sweeper)", () => {
  const sweepDeps = () => ({ db: s.ordersDb, inventory: s.inventory, logger: quiet });
  const placementsOf = (orderId: string) =>
    s.ordersDb.select().from(placements).where(eq(placements.orderId, orderId));

  beforeAll(async () => {
    // The catalog-outage test above may have left the client's circuit open (2 s).
    for (let tries = 0; ; tries++) {
      const ok = await s.inventory.releaseStock({ orderId: randomUUID() }).then(
        () => true,
        () => false,
      );
      if (ok || tries > 60) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  it("a placed order, and one refused for stock, leave no placement behind", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 1 });
    const key = "tidy";
    await s.client.placeOrder(
      { items: [{ productId: p.id, quantity: 1 }], paymentToken: "tok_visa", idempotencyKey: key },
      auth,
    );
    expect(await placementsOf(orderIdFor(userId, key))).toEqual([]);
    const refused = "refused";
    const err = await rpcError(
      s.client.placeOrder(
        {
          items: [{ productId: p.id, quantity: 1 }],
          paymentToken: "tok_visa",
          idempotencyKey: refused,
        },
        auth,
      ),
    );
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(await placementsOf(orderIdFor(userId, refused))).toEqual([]);
  });

  it("gives back the stock of an order orders died before recording, once it is old enough", async () => {
    const p = await s.insertProduct({ stock: 10 });
    // What a PlaceOrder killed between ReserveStock and its commit leaves: the
    // placement row, the catalog's reservation, and no order.
    const orderId = randomUUID();
    await s.ordersDb.insert(placements).values({ orderId });
    await s.inventory.reserveStock({ orderId, items: [{ productId: p.id, quantity: 3 }] });
    expect(await s.stockOf(p.id)).toBe(7);

    // Younger than the timeout: a PlaceOrder may still be at work on it.
    expect(await sweepPlacements(sweepDeps(), 60_000)).toBe(0);
    expect(await s.stockOf(p.id)).toBe(7);

    await s.ordersDb
      .update(placements)
      .set({ startedAt: sql`now() - interval '5 minutes'` })
      .where(eq(placements.orderId, orderId));
    expect(await sweepPlacements(sweepDeps(), 60_000)).toBe(1);
    expect(await s.stockOf(p.id)).toBe(10);
    expect(await s.releasedReservations(p.id)).toEqual([orderId]);
    expect(await placementsOf(orderId)).toEqual([]);
    // Nothing left to do: a second pass changes nothing.
    expect(await sweepPlacements(sweepDeps(), 60_000)).toBe(0);
    expect(await s.stockOf(p.id)).toBe(10);
  });

  it("keeps the placement while the catalog is down, and releases it when it is back", async () => {
    const p = await s.insertProduct({ stock: 4 });
    const orderId = randomUUID();
    await s.ordersDb
      .insert(placements)
      .values({ orderId, startedAt: sql`now() - interval '5 minutes'` });
    await s.inventory.reserveStock({ orderId, items: [{ productId: p.id, quantity: 4 }] });
    await s.catalogDown();
    try {
      await expect(sweepPlacements(sweepDeps(), 60_000)).rejects.toThrow(/unavailable/);
      expect(await placementsOf(orderId)).toHaveLength(1);
    } finally {
      await s.catalogUp();
    }
    await expect
      .poll(() => sweepPlacements(sweepDeps(), 60_000).catch(() => -1), { timeout: 10_000 })
      .toBe(1);
    expect(await s.stockOf(p.id)).toBe(4);
  });

  it("a PlaceOrder slower than the timeout records nothing: ABORTED, stock back", async () => {
    const { userId, auth } = await s.customer();
    const p = await s.insertProduct({ stock: 5 });
    // The real identity and catalog, with the sweeper running (timeout 0) right after
    // the reservation, as if this call had stalled past the timeout there.
    const slowInventory: InventoryClient = {
      reserveStock: (async (req: Parameters<InventoryClient["reserveStock"]>[0]) => {
        const res = await s.inventory.reserveStock(req);
        // (Older leftovers go too: the catalog-outage test's release could not be done.)
        expect(await sweepPlacements(sweepDeps(), 0)).toBeGreaterThanOrEqual(1);
        expect(await placementsOf(orderIdFor(userId, "slow"))).toEqual([]);
        return res;
      }) as InventoryClient["reserveStock"],
      releaseStock: s.inventory.releaseStock,
    };
    const identity: IdentityClient = {
      getUser: ((req: { userId: string }) =>
        s.identityClient.getUser(req, auth)) as IdentityClient["getUser"],
    };
    const claims = { sub: userId, roles: ["customer"] } as unknown as Claims;
    const placing = placeOrder(
      {
        db: s.ordersDb,
        checkUser: userCheck(identity, 0),
        inventory: slowInventory,
        notePlacement: placementNoter(s.ordersDb),
        recordOrder: orderRecorder(s.ordersDb),
      },
      claims,
      create(PlaceOrderRequestSchema, {
        items: [{ productId: p.id, quantity: 2 }],
        paymentToken: "tok_visa",
        idempotencyKey: "slow",
      }),
      quiet,
    );
    await expect(placing).rejects.toMatchObject({ code: Code.ABORTED });
    expect(await s.orderRowsOf(userId)).toHaveLength(0);
    expect(await s.stockOf(p.id)).toBe(5);
    expect(await placementsOf(orderIdFor(userId, "slow"))).toEqual([]);
  });
});

describe("USER_CHECK_TTL_MS", () => {
  const base = { DATABASE_URL: "postgres://localhost/orders", NATS_URL: "nats://localhost:4222" };
  it("defaults to a minute, accepts 0 (always ask), refuses what is not a duration", () => {
    expect(loadConfig(ordersEnv, base).USER_CHECK_TTL_MS).toBe(60_000);
    expect(loadConfig(ordersEnv, { ...base, USER_CHECK_TTL_MS: "0" }).USER_CHECK_TTL_MS).toBe(0);
    for (const bad of ["-1", "soon", "3600001"]) {
      expect(() => loadConfig(ordersEnv, { ...base, USER_CHECK_TTL_MS: bad })).toThrow(
        /USER_CHECK_TTL_MS/,
      );
    }
  });
});

describe("ORPHAN_RESERVATION_MS", () => {
  const base = { DATABASE_URL: "postgres://u@h/db", NATS_URL: "nats://h:4222" };
  it("defaults to two minutes and refuses a value that would sweep live PlaceOrders", () => {
    expect(loadConfig(ordersEnv, base).ORPHAN_RESERVATION_MS).toBe(120_000);
    expect(loadConfig(ordersEnv, { ...base, ORPHAN_RESERVATION_MS: "30000" })).toMatchObject({
      ORPHAN_RESERVATION_MS: 30_000,
    });
    for (const bad of ["0", "999", "soon", "-5"]) {
      expect(() => loadConfig(ordersEnv, { ...base, ORPHAN_RESERVATION_MS: bad })).toThrow(
        /ORPHAN_RESERVATION_MS/,
      );
    }
  });
});
