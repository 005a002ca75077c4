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
import { commitTogether } from "@shopmesh/runtime/commit-together.js";
import { reusable, transactionEndingWith } from "@shopmesh/runtime/db.js";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "@shopmesh/runtime/errors.js";
import { type ServiceRegistration, serve } from "@shopmesh/runtime/grpc-server.js";
import type { Tx } from "@shopmesh/runtime/outbox.js";
import { and, asc, eq, inArray, type SQL, sql } from "drizzle-orm";
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
  const reserve: Reserver = {
    ...deps,
    // Orders of one line, which are most, wait in this process for the one in flight,
    // then commit together (ADR 0010): a best-seller's row is changed by one statement
    // at a time from here, instead of its callers queueing on PostgreSQL's row lock.
    reserveOne: commitTogether(
      deps.db,
      (session, line: OneLine) => reserveOne(session, { ...line }) as Promise<TakenRow[]>,
      (line) => line.productId,
    ),
  };
  return serve(InventoryService, {
    reserveStock: (req) => reserveStock(reserve, req),
    releaseStock: (req) => releaseStock(deps.db, req),
  });
}

/** The values of `reserveOne`. */
interface OneLine {
  orderId: string;
  productId: string;
  quantity: number;
  position: number;
  floor: number;
}

interface Reserver extends InventoryDeps {
  reserveOne: (line: OneLine) => Promise<TakenRow[]>;
}

async function reserveStock(deps: Reserver, req: ReserveStockRequest) {
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

  // Products are taken in id order: no deadlocks between orders of several products.
  const ordered = [...items.entries()].sort(([, a], [, b]) => (a.productId < b.productId ? -1 : 1));
  const lines =
    (await reserveAtOnce(deps, orderId, ordered)) ??
    (await reserveCarefully(deps, orderId, items, ordered));
  if (lines === "already reserved") return readReservation(deps.db, orderId);
  return { orderId, lines: lines.map(lineToProto), alreadyReserved: false };
}

type Item = { productId: string; quantity: number };

/**
 * The common case, with nothing in between sent to this process: an order of one line is
 * one statement (`reserveOne`), which commits on its own or with the other one-line
 * orders that came while one was in flight (`commitTogether`); an order of several lines is one
 * transaction sent in one write, BEGIN to COMMIT (`transactionEndingWith`), each line its
 * own statement in product id order, as every writer of several products locks them (no
 * deadlock; a single statement would lock them in whatever order its plan visits them).
 * Either way: the reservation row, every line taken, and a guard that fails unless every
 * line was. A best-seller's row is then locked only while PostgreSQL runs the statements
 * and commits, never across a round trip to this process. Undefined when anything else is
 * the case — the order is reserved already, a product is missing, inactive or short, or a
 * line would leave its product at or below the low-stock threshold (whose StockLow event
 * must be written in the same transaction): the careful path then decides, and says what
 * is wrong.
 */
async function reserveAtOnce(
  deps: Reserver,
  orderId: string,
  ordered: [number, Item][],
): Promise<LineRow[] | undefined> {
  const floor = deps.lowStockThreshold ?? -1;
  try {
    const [only, ...more] = ordered;
    if (only !== undefined && more.length === 0) {
      const [position, item] = only;
      const [row] = await deps.reserveOne({
        orderId,
        productId: item.productId,
        quantity: item.quantity,
        position,
        floor,
      });
      return row === undefined ? undefined : [lineOf(orderId, position, item.quantity, row)];
    }
    const [, ...results] = await transactionEndingWith(deps.db, (tx) => [
      // No ON CONFLICT: an order reserved already fails on the key, and so does all of it.
      () => insertReservation(tx, { orderId }),
      ...ordered.map(
        ([position, item]) =>
          () =>
            take(tx, orderId, position, item, floor),
      ),
      () => checkAllTaken(tx, { orderId, lines: ordered.length }),
    ]);
    const taken = results.slice(0, ordered.length) as TakenRow[][];
    const lines: LineRow[] = [];
    for (const [i, [position, item]] of ordered.entries()) {
      const row = taken[i]?.[0];
      if (row === undefined) return undefined; // cannot be: the guard would have failed
      lines.push(lineOf(orderId, position, item.quantity, row));
    }
    return lines.sort((a, b) => a.position - b.position);
  } catch {
    // Nothing was written, whatever it was (even a lost connection after the commit went
    // out: the careful path then finds the reservation, if it committed, and returns it).
    return undefined;
  }
}

/**
 * Reserves with every check in this process: claims the order id (a concurrent call for
 * the same order blocks on the key until the first ends, then finds it reserved), takes
 * each line, says which line cannot be taken, and writes StockLow for a product that
 * falls to its threshold. Everything goes out in one write (BEGIN included); the row
 * locks are held for one round trip and the commit.
 */
async function reserveCarefully(
  deps: InventoryDeps,
  orderId: string,
  items: Item[],
  ordered: [number, Item][],
): Promise<LineRow[] | "already reserved"> {
  try {
    return await deps.db.transaction(async (tx) => {
      // Sent in this order, in one write: each statement starts when it is called.
      const [claim, ...taken] = (await Promise.allSettled([
        claimReservation(tx, { orderId }),
        ...ordered.map(([position, item]) => take(tx, orderId, position, item, -1)),
      ])) as [PromiseSettledResult<{ orderId: string }[]>, ...PromiseSettledResult<TakenRow[]>[]];
      if (claim.status === "rejected") throw claim.reason;
      if (claim.value.length === 0) throw new AlreadyReserved();
      // A line not taken is a product missing, inactive or short: say which, for the
      // first such line in request order. Throwing rolls everything back, the other
      // lines and the reservation row included: nothing is half-written.
      const byPosition = new Map<number, TakenRow>();
      for (const [i, result] of taken.entries()) {
        if (result.status === "rejected") throw result.reason;
        const row = result.value[0];
        if (row !== undefined) byPosition.set(ordered[i]?.[0] ?? -1, row);
      }
      if (byPosition.size < items.length) await explainShortfall(tx, items, byPosition);

      const lines: LineRow[] = [];
      for (const [position, item] of items.entries()) {
        const p = byPosition.get(position);
        if (p === undefined) throw new Error("unreachable: every line was taken");
        await noteStockChange(tx, p, p.stock + item.quantity, deps.lowStockThreshold);
        lines.push(lineOf(orderId, position, item.quantity, p));
      }
      return lines;
    });
  } catch (err) {
    if (err instanceof AlreadyReserved) return "already reserved";
    throw err;
  }
}

/** The stored reservation of an order reserved before (by an earlier or a concurrent call). */
async function readReservation(db: CatalogDb, orderId: string) {
  // READ COMMITTED: these statements see the other call's commit.
  const [existing] = await db.select().from(reservations).where(eq(reservations.orderId, orderId));
  if (existing?.status === "released") {
    // Re-reserving a released order would take stock for an order already given up.
    throw new FailedPreconditionError(`the reservation of order ${orderId} was released`);
  }
  const lines = await db
    .select()
    .from(reservationLines)
    .where(eq(reservationLines.orderId, orderId))
    .orderBy(asc(reservationLines.position));
  return { orderId, lines: lines.map(lineToProto), alreadyReserved: true };
}

/** The order was reserved already (by an earlier or a concurrent call): roll back, read it. */
class AlreadyReserved extends Error {}

/** A product row as `take` leaves it. */
interface TakenRow {
  id: string;
  sku: string;
  name: string;
  stock: number;
  price_amount: string;
  currency_code: string;
}

/**
 * One statement per line: the product's stock goes down by the quantity if it is
 * active and keeps more than `floor` units (-1: any stock that covers the quantity; the
 * row stays locked until the transaction ends), and the line is recorded with the
 * product's price — from the row, never from the caller. No row back means nothing was
 * taken.
 */
function take(tx: Tx, orderId: string, position: number, item: Item, floor: number) {
  return takeLine(tx, {
    orderId,
    position,
    productId: item.productId,
    quantity: item.quantity,
    floor,
  }) as Promise<TakenRow[]>;
}

/**
 * The CTEs that take one line: `taken` (the product's stock down by the quantity if it is
 * active and keeps more than `floor` units; the row stays locked until the transaction
 * ends) and `line` (the line recorded with the product's price — from the row, never from
 * the caller). `also` adds a condition to the update.
 */
function takeCtes(also: SQL = sql`true`): SQL {
  const quantity = sql.placeholder("quantity");
  return sql`
    taken as (
      update ${products} set stock = stock - ${quantity}::int, updated_at = now()
      where id = ${sql.placeholder("productId")} and active
        and stock - ${quantity}::int > ${sql.placeholder("floor")}::int and ${also}
      returning id, sku, name, stock, price_amount, currency_code
    ), line as (
      insert into ${reservationLines}
        (order_id, product_id, position, sku, name, quantity, unit_price_amount, currency_code)
      select ${sql.placeholder("orderId")}, id, ${sql.placeholder("position")}, sku, name,
        ${quantity}::int, price_amount, currency_code
      from taken
    )`;
}

/** ReserveStock's statements, built once (every order runs them): one line taken; */
const takeLine = reusable(
  () => sql`
    with ${takeCtes()}
    select id, sku, name, stock, price_amount::text, currency_code from taken`,
);

/**
 * an order of one line reserved in one statement — the reservation row (no ON CONFLICT:
 * an order reserved already fails on the key, and so does all of it), the line, and the
 * guard (PostgreSQL has no assertion statement: a division by zero fails the statement
 * unless the line was taken);
 */
const reserveOne = reusable(
  () => sql`
    with reservation as (
      insert into ${reservations} (order_id) values (${sql.placeholder("orderId")}) returning order_id
    ), ${takeCtes(sql`exists (select 1 from reservation)`)}
    select id, sku, name, stock, price_amount::text, currency_code from taken
    where (select 1 / count(*)::int from taken) = 1`,
);

/** and, for several lines, the reservation row and the guard on their own. */
const insertReservation = reusable((db) =>
  db
    .insert(reservations)
    .values({ orderId: sql.placeholder("orderId") })
    .prepare("catalog_insert_reservation"),
);

const checkAllTaken = reusable(
  () => sql`
    select 1 / (count(*) = ${sql.placeholder("lines")}::int)::int as all_taken
    from ${reservationLines} where order_id = ${sql.placeholder("orderId")}`,
);

/** The careful path's claim: no row back when the order is reserved already. */
const claimReservation = reusable((db) =>
  db
    .insert(reservations)
    .values({ orderId: sql.placeholder("orderId") })
    .onConflictDoNothing({ target: reservations.orderId })
    .returning({ orderId: reservations.orderId })
    .prepare("catalog_claim_reservation"),
);

function lineOf(orderId: string, position: number, quantity: number, p: TakenRow): LineRow {
  return {
    orderId,
    productId: p.id,
    position,
    sku: p.sku,
    name: p.name,
    quantity,
    unitPriceAmount: BigInt(p.price_amount),
    currencyCode: p.currency_code,
  };
}

/** Throws the error of the first line in request order that could not be taken. */
async function explainShortfall(
  tx: Tx,
  items: { productId: string; quantity: number }[],
  taken: Map<number, TakenRow>,
): Promise<never> {
  const rows = await tx
    .select({ id: products.id, sku: products.sku, active: products.active, stock: products.stock })
    .from(products)
    .where(
      inArray(
        products.id,
        items.map((i) => i.productId),
      ),
    );
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const [position, item] of items.entries()) {
    if (taken.has(position)) continue;
    const p = byId.get(item.productId);
    if (p === undefined) throw new NotFoundError(`product ${item.productId} not found`);
    if (!p.active) throw new FailedPreconditionError(`product ${p.sku} (${p.id}) is not active`);
    throw new FailedPreconditionError(
      `insufficient stock for ${p.sku} (${p.id}): requested ${item.quantity}, available ${p.stock}`,
    );
  }
  throw new Error("unreachable: a line was not taken");
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
