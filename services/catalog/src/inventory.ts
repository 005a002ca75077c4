/**
 * `createInventoryService(deps)`: InventoryService, the internal API the orders
 * service uses to reserve and release stock for an order.
 *
 * No user token is checked here: the caller is a service, not a user. In the
 * cluster the Istio AuthorizationPolicy of the catalog admits calls to
 * /shop.catalog.v1.InventoryService/* only from the orders service account (mTLS
 * STRICT), and the edge never exposes this service.
 *
 * Concurrency, in short (details at each step):
 * - the order id is the primary key of `reservations`, and a reservation row is
 *   inserted first with ON CONFLICT DO NOTHING: of two concurrent calls for one
 *   order, exactly one inserts; the other waits for it and then reads its result;
 * - product rows are locked with SELECT ... FOR UPDATE in id order (every writer of
 *   several products takes them in that order, so there is no deadlock), checked,
 *   and only then decremented; a CHECK (stock >= 0) backs this up;
 * - everything is one transaction: any failure rolls back the reservation row too.
 */
import {
  InventoryService,
  type ReleaseStockRequest,
  type ReserveStockRequest,
} from "@shopmesh/gen/shop/catalog/v1/inventory_pb.js";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "@shopmesh/runtime/errors.js";
import { type ServiceRegistration, serve } from "@shopmesh/runtime/grpc-server.js";
import { and, asc, eq, inArray, sql } from "drizzle-orm";
import type { CatalogDb } from "./db/database.js";
import { products, reservationLines, reservations } from "./db/schema.js";
import { noteStockChange } from "./products.js";

export interface InventoryDeps {
  db: CatalogDb;
  lowStockThreshold?: number;
}

type LineRow = typeof reservationLines.$inferSelect;

function lineToProto(line: LineRow) {
  return {
    productId: line.productId,
    sku: line.sku,
    name: line.name,
    quantity: line.quantity,
    unitPrice: { currencyCode: line.currencyCode, amount: line.unitPriceAmount },
  };
}

export function createInventoryService(deps: InventoryDeps): ServiceRegistration {
  return serve(InventoryService, {
    reserveStock: (req) => reserveStock(deps, req),
    releaseStock: (req) => releaseStock(deps.db, req),
  });
}

async function reserveStock(deps: InventoryDeps, req: ReserveStockRequest) {
  // Postgres prints uuids in lower case; compare ids the same way.
  const orderId = req.orderId.toLowerCase();
  const items = req.items.map((i) => ({
    productId: i.productId.toLowerCase(),
    quantity: i.quantity,
  }));
  if (new Set(items.map((i) => i.productId)).size !== items.length) {
    throw new InvalidArgumentError("items: each product may appear only once", [
      {
        field: "items",
        rule: "items.unique_product",
        message: "each product may appear only once",
      },
    ]);
  }

  return deps.db.transaction(async (tx) => {
    // Claim the order id first. A concurrent call for the same order blocks here on
    // the primary key until this transaction ends: if it commits, that call's
    // insert does nothing and it returns the stored reservation; if it rolls back,
    // that call proceeds as the first. Either way stock is taken once.
    const claimed = await tx
      .insert(reservations)
      .values({ orderId })
      .onConflictDoNothing({ target: reservations.orderId })
      .returning({ orderId: reservations.orderId });
    if (claimed.length === 0) {
      // READ COMMITTED: this new statement sees the other transaction's commit.
      const [existing] = await tx
        .select()
        .from(reservations)
        .where(eq(reservations.orderId, orderId));
      if (existing?.status === "released") {
        // Re-reserving a released order would take stock for an order already given up.
        throw new FailedPreconditionError(`the reservation of order ${orderId} was released`);
      }
      const lines = await tx
        .select()
        .from(reservationLines)
        .where(eq(reservationLines.orderId, orderId))
        .orderBy(asc(reservationLines.position));
      return { orderId, lines: lines.map(lineToProto), alreadyReserved: true };
    }

    // Lock every product of the order in id order. Concurrent reservations of the
    // same product queue here, and each sees the stock the previous one left.
    const ids = items.map((i) => i.productId).sort();
    const rows = await tx
      .select()
      .from(products)
      .where(inArray(products.id, ids))
      .orderBy(asc(products.id))
      .for("update");
    const byId = new Map(rows.map((r) => [r.id, r]));

    // Check every line before changing anything, reporting the first bad line in
    // request order. Throwing rolls back the whole transaction, reservation row
    // included: nothing is half-written.
    for (const item of items) {
      const p = byId.get(item.productId);
      if (p === undefined) throw new NotFoundError(`product ${item.productId} not found`);
      if (!p.active) throw new FailedPreconditionError(`product ${p.sku} (${p.id}) is not active`);
      if (p.stock < item.quantity) {
        throw new FailedPreconditionError(
          `insufficient stock for ${p.sku} (${p.id}): requested ${item.quantity}, available ${p.stock}`,
        );
      }
    }

    const lines: LineRow[] = [];
    for (const [position, item] of items.entries()) {
      const p = byId.get(item.productId);
      if (p === undefined) throw new Error("unreachable: checked above");
      // The price comes from the locked product row, never from the caller.
      lines.push({
        orderId,
        productId: p.id,
        position,
        sku: p.sku,
        name: p.name,
        quantity: item.quantity,
        unitPriceAmount: p.priceAmount,
        currencyCode: p.currencyCode,
      });
    }
    for (const line of [...lines].sort((a, b) => (a.productId < b.productId ? -1 : 1))) {
      const [updated] = await tx
        .update(products)
        .set({ stock: sql`${products.stock} - ${line.quantity}`, updatedAt: sql`now()` })
        .where(eq(products.id, line.productId))
        .returning({ id: products.id, sku: products.sku, stock: products.stock });
      if (updated === undefined) throw new Error(`locked product ${line.productId} vanished`);
      await noteStockChange(tx, updated, updated.stock + line.quantity, deps.lowStockThreshold);
    }
    await tx.insert(reservationLines).values(lines);
    return { orderId, lines: lines.map(lineToProto), alreadyReserved: false };
  });
}

async function releaseStock(db: CatalogDb, req: ReleaseStockRequest) {
  const orderId = req.orderId.toLowerCase();
  return db.transaction(async (tx) => {
    // The conditional UPDATE locks the reservation row; a concurrent release waits
    // for it, then re-checks status = 'reserved', finds 'released' and does nothing.
    // So the units go back exactly once.
    const [released] = await tx
      .update(reservations)
      .set({ status: "released", releasedAt: sql`now()` })
      .where(and(eq(reservations.orderId, orderId), eq(reservations.status, "reserved")))
      .returning({ orderId: reservations.orderId });
    if (released === undefined) return { released: false };
    const lines = await tx
      .select()
      .from(reservationLines)
      .where(eq(reservationLines.orderId, orderId))
      // Same lock order as ReserveStock: by product id.
      .orderBy(asc(reservationLines.productId));
    for (const line of lines) {
      await tx
        .update(products)
        .set({ stock: sql`${products.stock} + ${line.quantity}`, updatedAt: sql`now()` })
        .where(eq(products.id, line.productId));
    }
    return { released: true };
  });
}
