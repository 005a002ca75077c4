/**
 * InventoryService over real gRPC against a real database, with real concurrency:
 * no overselling, one reservation per order, all-or-nothing, release exactly once.
 */

import { randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { StockLowSchema } from "@shopmesh/gen/shop/catalog/v1/events_pb.js";
import { InventoryService } from "@shopmesh/gen/shop/catalog/v1/inventory_pb.js";
import { openDatabase } from "@shopmesh/runtime/db.js";
import { Code, RpcError } from "@shopmesh/runtime/errors.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { rpcError, startCountingRelay, startTestServer } from "@shopmesh/runtime/testing.js";
import { eq, inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as schema from "../src/db/schema.js";
import { outbox, products, reservationLines, reservations } from "../src/db/schema.js";
import { createInventoryService } from "../src/inventory.js";
import { type Catalog, startCatalog } from "./harness.js";

let c: Catalog;
beforeAll(async () => {
  c = await startCatalog();
});
afterAll(async () => {
  await c?.stop();
});

const stockOf = async (id: string) =>
  (
    await c.database.db.select({ stock: products.stock }).from(products).where(eq(products.id, id))
  )[0]?.stock;

const reservationCount = async (orderId: string) =>
  (await c.database.db.select().from(reservations).where(eq(reservations.orderId, orderId))).length;

describe("ReserveStock", () => {
  it("reserves in one write: a best-seller's row is locked for no round trip", async () => {
    // The catalog's inventory service on a pool of one connection through a counting relay.
    const relay = await startCountingRelay(c.url);
    const database = await openDatabase({ url: relay.url, schema, max: 1 });
    const { server, address } = await startTestServer([
      createInventoryService({ db: database.db, lowStockThreshold: 5 }),
    ]);
    const inventory = createGrpcClient(InventoryService, address);
    try {
      const p = await c.insertProduct({ stock: 100 });
      const reserve = (quantity = 2) =>
        inventory.reserveStock({ orderId: randomUUID(), items: [{ productId: p.id, quantity }] });
      await reserve(); // prepares the statements on the connection
      relay.take();
      const res = await reserve();
      expect(relay.take()).toBe(1);
      expect(res.lines).toHaveLength(1);
      expect(await stockOf(p.id)).toBe(96);
      // Several lines (one statement each, in id order), also in one write, priced and in
      // request order.
      const q = await c.insertProduct({ stock: 50, priceAmount: 700n });
      const twoLines = () =>
        inventory.reserveStock({
          orderId: randomUUID(),
          items: [
            { productId: q.id, quantity: 3 },
            { productId: p.id, quantity: 1 },
          ],
        });
      await twoLines(); // prepares these statements on the connection
      relay.take();
      const two = await twoLines();
      expect(relay.take()).toBe(1);
      expect(two.lines.map((l) => [l.productId, l.quantity, l.unitPrice?.amount])).toEqual([
        [q.id, 3, 700n],
        [p.id, 1, p.priceAmount],
      ]);
      expect([await stockOf(p.id), await stockOf(q.id)]).toEqual([94, 44]);
      // Down to the threshold (StockLow) and short: the careful path, more round trips,
      // and still right.
      await c.database.db.update(products).set({ stock: 6 }).where(eq(products.id, p.id));
      relay.take();
      await reserve();
      expect(relay.take()).toBeGreaterThan(1);
      expect(await stockOf(p.id)).toBe(4);
      expect((await rpcError(reserve(5))).code).toBe(Code.FAILED_PRECONDITION);
      expect(await stockOf(p.id)).toBe(4);
    } finally {
      inventory.close();
      await server.shutdown();
      await database.close();
      await relay.close();
    }
  });

  it("commits one-line orders that arrive together in one transaction, each reserved once", async () => {
    const relay = await startCountingRelay(c.url);
    const database = await openDatabase({ url: relay.url, schema, max: 4 });
    const { server, address } = await startTestServer([
      createInventoryService({ db: database.db }),
    ]);
    const inventory = createGrpcClient(InventoryService, address);
    try {
      const p = await c.insertProduct({ stock: 100 });
      const short = await c.insertProduct({ stock: 1 });
      const reserve = (productId: string, orderId = randomUUID()) =>
        inventory.reserveStock({ orderId, items: [{ productId, quantity: 2 }] });
      await reserve(p.id); // prepares the statement
      relay.commits();
      const ids = Array.from({ length: 30 }, () => randomUUID());
      await Promise.all(ids.map((id) => reserve(p.id, id)));
      // One transaction per order would be 30 (autocommit statements, no COMMIT sent);
      // together they are a few, and the orders of one share its start time (now()).
      const commits = relay.commits();
      expect(commits).toBeGreaterThan(0);
      expect(commits).toBeLessThan(10);
      const started = await c.database.db
        .selectDistinct({ at: reservations.createdAt })
        .from(reservations)
        .where(inArray(reservations.orderId, ids));
      expect(started.length).toBeLessThan(10);
      for (const id of ids) expect(await reservationCount(id)).toBe(1);
      expect(await stockOf(p.id)).toBe(100 - 2 - 30 * 2);
      // Among orders that arrive together, one of a product that is short fails alone
      // (FAILED_PRECONDITION, nothing written); every other order is reserved once.
      const more = Array.from({ length: 10 }, () => randomUUID());
      const shortOrder = randomUUID();
      const results = await Promise.allSettled([
        ...more.map((id) => reserve(p.id, id)),
        reserve(short.id, shortOrder),
      ]);
      expect(results.slice(0, 10).map((r) => r.status)).toEqual(more.map(() => "fulfilled"));
      const failed = results[10] as PromiseRejectedResult;
      expect(failed.status).toBe("rejected");
      expect(failed.reason).toMatchObject({ code: Code.FAILED_PRECONDITION });
      expect(String(failed.reason.message)).toContain("insufficient stock");
      expect(await reservationCount(shortOrder)).toBe(0);
      expect(await stockOf(short.id)).toBe(1);
      for (const id of more) expect(await reservationCount(id)).toBe(1);
      expect(await stockOf(p.id)).toBe(100 - 2 - 40 * 2);
      const lines = await c.database.db
        .select()
        .from(reservationLines)
        .where(eq(reservationLines.productId, p.id));
      expect(lines).toHaveLength(41);
    } finally {
      inventory.close();
      await server.shutdown();
      await database.close();
      await relay.close();
    }
  });

  it("reserves and prices lines from the catalog, in request order", async () => {
    const a = await c.insertProduct({ stock: 5, priceAmount: 1999n, name: "Alpha" });
    const b = await c.insertProduct({ stock: 5, priceAmount: 250n, name: "Beta" });
    const orderId = randomUUID();
    const res = await c.inventory.reserveStock({
      orderId,
      items: [
        { productId: b.id, quantity: 2 },
        { productId: a.id, quantity: 1 },
      ],
    });
    expect(res.alreadyReserved).toBe(false);
    expect(res.orderId).toBe(orderId);
    expect(res.lines).toMatchObject([
      {
        productId: b.id,
        sku: b.sku,
        name: "Beta",
        quantity: 2,
        unitPrice: { currencyCode: "USD", amount: 250n },
      },
      {
        productId: a.id,
        sku: a.sku,
        name: "Alpha",
        quantity: 1,
        unitPrice: { currencyCode: "USD", amount: 1999n },
      },
    ]);
    expect(await stockOf(a.id)).toBe(4);
    expect(await stockOf(b.id)).toBe(3);
  });

  it("THE RACE: 50 concurrent orders for 10 units — exactly 10 succeed, stock ends at 0", async () => {
    const p = await c.insertProduct({ stock: 10 });
    const orderIds = Array.from({ length: 50 }, () => randomUUID());
    const results = await Promise.allSettled(
      orderIds.map((orderId) =>
        c.inventory.reserveStock({ orderId, items: [{ productId: p.id, quantity: 1 }] }),
      ),
    );
    const ok = results.filter((r) => r.status === "fulfilled");
    const failed = results.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    expect(ok).toHaveLength(10);
    expect(failed).toHaveLength(40);
    for (const err of failed) {
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).code).toBe(Code.FAILED_PRECONDITION);
      expect((err as RpcError).message).toBe(
        `insufficient stock for ${p.sku} (${p.id}): requested 1, available 0`,
      );
    }
    expect(await stockOf(p.id)).toBe(0);
    // The losers left no reservation behind.
    const lines = await c.database.db
      .select()
      .from(reservationLines)
      .where(eq(reservationLines.productId, p.id));
    expect(lines).toHaveLength(10);
    // Stock crossed the low-stock threshold (5) once: one StockLow, in the outbox.
    const events = (
      await c.database.db.select().from(outbox).where(eq(outbox.subject, "shop.catalog.stock_low"))
    )
      .map((row) => fromBinary(StockLowSchema, row.payload))
      .filter((e) => e.productId === p.id);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ sku: p.sku, stock: 5 });
  });

  it("reserves once when the same order arrives twice, sequentially or concurrently", async () => {
    const p = await c.insertProduct({ stock: 100, priceAmount: 700n });
    const orderId = randomUUID();
    const req = { orderId, items: [{ productId: p.id, quantity: 3 }] };
    const first = await c.inventory.reserveStock(req);
    // A retry carrying other items still returns the stored reservation.
    const retry = await c.inventory.reserveStock({
      orderId,
      items: [{ productId: p.id, quantity: 50 }],
    });
    expect(first.alreadyReserved).toBe(false);
    expect(retry.alreadyReserved).toBe(true);
    expect(retry.lines).toEqual(first.lines);
    expect(await stockOf(p.id)).toBe(97);

    // Concurrently: ten calls for one new order take stock once.
    const racedOrder = randomUUID();
    const raced = await Promise.all(
      Array.from({ length: 10 }, () =>
        c.inventory.reserveStock({
          orderId: racedOrder,
          items: [{ productId: p.id, quantity: 4 }],
        }),
      ),
    );
    expect(raced.filter((r) => !r.alreadyReserved)).toHaveLength(1);
    for (const r of raced) expect(r.lines).toEqual(raced[0]?.lines);
    expect(await stockOf(p.id)).toBe(93);
    expect(await reservationCount(racedOrder)).toBe(1);
  });

  it("is all or nothing: one short line reserves nothing for any line", async () => {
    const plenty = await c.insertProduct({ stock: 50 });
    const short = await c.insertProduct({ stock: 2 });
    const orderId = randomUUID();
    const err = await rpcError(
      c.inventory.reserveStock({
        orderId,
        items: [
          { productId: plenty.id, quantity: 5 },
          { productId: short.id, quantity: 3 },
        ],
      }),
    );
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toBe(
      `insufficient stock for ${short.sku} (${short.id}): requested 3, available 2`,
    );
    expect(await stockOf(plenty.id)).toBe(50);
    expect(await stockOf(short.id)).toBe(2);
    expect(await reservationCount(orderId)).toBe(0);

    // The failed order id is not burnt: a corrected retry succeeds.
    const ok = await c.inventory.reserveStock({
      orderId,
      items: [
        { productId: plenty.id, quantity: 5 },
        { productId: short.id, quantity: 2 },
      ],
    });
    expect(ok.alreadyReserved).toBe(false);
    expect(await stockOf(short.id)).toBe(0);
  });

  it("answers NOT_FOUND for an unknown product and FAILED_PRECONDITION for an inactive one", async () => {
    const p = await c.insertProduct({ stock: 5 });
    const ghost = randomUUID();
    const missing = await rpcError(
      c.inventory.reserveStock({
        orderId: randomUUID(),
        items: [
          { productId: p.id, quantity: 1 },
          { productId: ghost, quantity: 1 },
        ],
      }),
    );
    expect(missing.code).toBe(Code.NOT_FOUND);
    expect(missing.message).toBe(`product ${ghost} not found`);

    const off = await c.insertProduct({ stock: 5, active: false });
    const inactive = await rpcError(
      c.inventory.reserveStock({
        orderId: randomUUID(),
        items: [{ productId: off.id, quantity: 1 }],
      }),
    );
    expect(inactive.code).toBe(Code.FAILED_PRECONDITION);
    expect(inactive.message).toContain(off.sku);
    expect(await stockOf(p.id)).toBe(5);
    expect(await stockOf(off.id)).toBe(5);
  });

  it("rejects malformed requests with INVALID_ARGUMENT naming the field", async () => {
    const p = await c.insertProduct();
    const cases: [object, string][] = [
      [{ orderId: "nope", items: [{ productId: p.id, quantity: 1 }] }, "order_id"],
      [{ orderId: randomUUID(), items: [] }, "items"],
      [{ orderId: randomUUID(), items: [{ productId: p.id, quantity: 0 }] }, "items[0].quantity"],
      [
        {
          orderId: randomUUID(),
          items: [
            { productId: p.id, quantity: 1 },
            { productId: p.id.toUpperCase(), quantity: 1 },
          ],
        },
        "items",
      ],
    ];
    for (const [req, field] of cases) {
      const err = await rpcError(c.inventory.reserveStock(req));
      expect(err.code, field).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toContain(field);
    }
    expect(await stockOf(p.id)).toBe(10);
  });
});

describe("ReleaseStock", () => {
  it("returns the units once; a second (or concurrent) release is a no-op", async () => {
    const a = await c.insertProduct({ stock: 10 });
    const b = await c.insertProduct({ stock: 10 });
    const orderId = randomUUID();
    await c.inventory.reserveStock({
      orderId,
      items: [
        { productId: a.id, quantity: 4 },
        { productId: b.id, quantity: 10 },
      ],
    });
    expect(await stockOf(b.id)).toBe(0);

    const releases = await Promise.all(
      Array.from({ length: 5 }, () => c.inventory.releaseStock({ orderId })),
    );
    expect(releases.filter((r) => r.released)).toHaveLength(1);
    expect((await c.inventory.releaseStock({ orderId })).released).toBe(false);
    expect(await stockOf(a.id)).toBe(10);
    expect(await stockOf(b.id)).toBe(10);

    // A late ReserveStock retry for the released order does not take stock again.
    const late = await rpcError(
      c.inventory.reserveStock({ orderId, items: [{ productId: a.id, quantity: 4 }] }),
    );
    expect(late.code).toBe(Code.FAILED_PRECONDITION);
    expect(await stockOf(a.id)).toBe(10);
  });

  it("answers released = false for an order that never reserved", async () => {
    expect((await c.inventory.releaseStock({ orderId: randomUUID() })).released).toBe(false);
  });

  it("keeps stock consistent under mixed concurrent reserves and releases", async () => {
    const p = await c.insertProduct({ stock: 20 });
    const q = await c.insertProduct({ stock: 20 });
    const orders = Array.from({ length: 30 }, () => randomUUID());
    // Each order takes one of each product (in varying request order, so the lock
    // ordering is what prevents deadlocks), and every other order is released at once.
    const outcomes = await Promise.all(
      orders.map(async (orderId, i) => {
        const items = [
          { productId: p.id, quantity: 1 },
          { productId: q.id, quantity: 1 },
        ];
        if (i % 2 === 1) items.reverse();
        try {
          await c.inventory.reserveStock({ orderId, items });
        } catch (err) {
          expect((err as RpcError).code).toBe(Code.FAILED_PRECONDITION);
          return "short";
        }
        if (i % 2 === 0) {
          expect((await c.inventory.releaseStock({ orderId })).released).toBe(true);
          return "released";
        }
        return "held";
      }),
    );
    const held = outcomes.filter((o) => o === "held").length;
    expect(held).toBeGreaterThan(0);
    expect(await stockOf(p.id)).toBe(20 - held);
    expect(await stockOf(q.id)).toBe(20 - held);
  });
});
