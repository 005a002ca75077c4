/**
 * `placeOrder`: the first step of the order saga, for an authenticated caller.
 *
 *   1. idempotency: an order already placed with (user, key) is returned as it is;
 *   2. identity GetUser — the user exists (called with the caller's own token; a yes
 *      is remembered for USER_CHECK_TTL_MS, see downstream.ts `userCheck`);
 *   3. a `placements` row, then catalog ReserveStock — stock taken, lines priced by
 *      the catalog;
 *   4. one transaction: order PENDING_PAYMENT + items + history + OrderPlaced, and the
 *      placements row deleted.
 *
 * Payment follows asynchronously (payments consumes OrderPlaced). Each step that can
 * fail after the reservation undoes it right there (ReleaseStock). When orders dies
 * between 3 and 4, the placements row outlives it and the sweeper
 * (placement-sweeper.ts) gives the stock back.
 */
import { createHash } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ReservedLine } from "@shopmesh/gen/shop/catalog/v1/inventory_pb.js";
import { OrderPlacedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import type { PlaceOrderRequest } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import type { Claims } from "@shopmesh/runtime/auth.js";
import { commitTogether } from "@shopmesh/runtime/commit-together.js";
import { pgErrorCode, reusable, UNIQUE_VIOLATION } from "@shopmesh/runtime/db.js";
import { AbortedError, Code, FailedPreconditionError, RpcError } from "@shopmesh/runtime/errors.js";
import { uuidv7 } from "@shopmesh/runtime/ids.js";
import type { Logger } from "@shopmesh/runtime/logger.js";
import { statementWithEvent } from "@shopmesh/runtime/outbox.js";
import { and, eq, sql } from "drizzle-orm";
import type { OrdersDb } from "./db/database.js";
import {
  type OrderHistoryRow,
  type OrderItemRow,
  type OrderRow,
  orderHistory,
  orderItems,
  orders,
  placements,
} from "./db/schema.js";
import {
  fromDownstream,
  type InventoryClient,
  outcomeUnknown,
  releaseStock,
  type UserCheck,
} from "./downstream.js";
import { itemToProto, loadOrderView, type OrderView } from "./order-view.js";
import { ORDER_PLACED } from "./state-machine.js";

export interface PlaceOrderDeps {
  db: OrdersDb;
  /** identity's GetUser, remembered (`userCheck`). */
  checkUser: UserCheck;
  inventory: InventoryClient;
  /** Notes that stock is about to be reserved for an order (`placementNoter`). */
  notePlacement: (orderId: string) => Promise<unknown>;
  /** Records a reserved order (`orderRecorder`). */
  recordOrder: (order: NewOrder) => Promise<RecordedRow[]>;
}

const IDEMPOTENCY_CONSTRAINT = "orders_user_idempotency_key";

export async function placeOrder(
  deps: PlaceOrderDeps,
  claims: Claims,
  req: PlaceOrderRequest,
  logger: Logger,
): Promise<OrderView> {
  const { db } = deps;
  const userId = claims.sub.toLowerCase();
  const key = req.idempotencyKey === "" ? undefined : req.idempotencyKey;

  // 1. A retry of an order already placed: no second reservation, no second charge.
  if (key !== undefined) {
    const existing = await findByKey(db, userId, key);
    if (existing !== undefined) return existing;
  }
  let orderId = key === undefined ? uuidv7() : orderIdFor(userId, key);

  // 2. The user exists. The runtime client forwards the caller's token, so identity
  //    answers as it would to the user (GetUser allows the user themself).
  await deps.checkUser(userId);

  // 3. Reserve stock. All or nothing at the catalog; the order id makes it idempotent,
  //    so the client's retry on UNAVAILABLE cannot reserve twice.
  let lines: ReservedLine[];
  const items = req.items.map((i) => ({ productId: i.productId, quantity: i.quantity }));
  await deps.notePlacement(orderId);
  try {
    try {
      lines = (await deps.inventory.reserveStock({ orderId, items })).lines;
    } catch (err) {
      // An earlier attempt with this key reserved under this id and gave the stock
      // back when it failed: this retry is a new attempt, under a new id.
      if (!(err instanceof RpcError && err.code === Code.FAILED_PRECONDITION)) throw err;
      if (!/reservation .* was released/.test(err.message)) throw err;
      await forgetPlacement(db, orderId);
      orderId = uuidv7();
      await deps.notePlacement(orderId);
      lines = (await deps.inventory.reserveStock({ orderId, items })).lines;
    }
  } catch (err) {
    // Compensation when the outcome is unknown (deadline passed, connection lost):
    // the catalog may have committed the reservation after all. Releasing is a no-op
    // when it did not. Either way nothing is held once that is done.
    if (!outcomeUnknown(err) || (await releaseQuietly(deps.inventory, orderId, logger)))
      await forgetPlacement(db, orderId).catch(() => undefined);
    throw fromDownstream("catalog", err);
  }

  // 4. Record the order. From here on the stock is held for `orderId`: any failure
  //    gives it back before the error goes to the caller.
  try {
    const priced = priceLines(lines);
    const lineRows = priced.items.map((i) => ({ ...i, orderId }));
    // One statement (it commits on its own, or with the orders recorded at the same
    // time): the order, its lines, its history, the end of its placement and OrderPlaced.
    // The view is built from what was written and the times the database gave it:
    // nothing is read back.
    const [recorded] = await deps.recordOrder({
      values: {
        id: orderId,
        userId,
        totalAmount: priced.total,
        currencyCode: priced.currencyCode,
        idempotencyKey: key ?? null,
        ...itemColumns(lineRows),
      },
      event: {
        orderId,
        userId,
        items: lineRows.map((i) => itemToProto(i, priced.currencyCode)),
        total: { currencyCode: priced.currencyCode, amount: priced.total },
        paymentToken: req.paymentToken,
      },
    });
    if (recorded === undefined) throw new Error("recording the order returned nothing");
    const order: OrderRow = {
      id: orderId,
      userId,
      status: "PENDING_PAYMENT",
      totalAmount: priced.total,
      currencyCode: priced.currencyCode,
      paymentId: null,
      cancelReason: null,
      idempotencyKey: key ?? null,
      createdAt: new Date(recorded.created_ms),
      updatedAt: new Date(recorded.updated_ms),
    };
    const history: OrderHistoryRow[] = [
      {
        seq: Number(recorded.history_seq),
        orderId,
        status: "PENDING_PAYMENT",
        reason: "",
        changedAt: new Date(recorded.changed_ms),
      },
    ];
    // The lines are what was inserted (nothing is defaulted), in position order already.
    return { order, items: lineRows, history } satisfies OrderView;
  } catch (err) {
    if (
      key !== undefined &&
      (isConstraintViolation(err, IDEMPOTENCY_CONSTRAINT) ||
        isConstraintViolation(err, ORDERS_PKEY))
    ) {
      // A concurrent PlaceOrder with the same key committed first: this call is a
      // retry of that one and gets its order. Same key, same order id: the
      // reservation is the winner's, so it stays.
      const winner = await findByKey(db, userId, key);
      if (winner !== undefined) return winner;
    }
    // Compensation of step 3: no order was written, so the stock goes back.
    if (await releaseQuietly(deps.inventory, orderId, logger))
      await forgetPlacement(db, orderId).catch(() => undefined);
    if (pgErrorCode(err)?.code === DIVISION_BY_ZERO) {
      throw new AbortedError(
        "placing the order took too long and its stock reservation was given back; place it again",
      );
    }
    throw err;
  }
}

const ORDERS_PKEY = "orders_pkey";

/** A reserved order to record: its columns and lines (`itemColumns`), and OrderPlaced. */
interface NewOrder {
  values: Record<string, unknown>;
  event: MessageInitShape<typeof OrderPlacedSchema>;
}

/** What `recordOrder` answers. */
interface RecordedRow extends Record<string, unknown> {
  created_ms: number;
  updated_ms: number;
  history_seq: string;
  changed_ms: number;
}

/**
 * Records reserved orders; those recorded at the same time commit together (ADR 0010).
 * A failing one (a same-key retry meeting the unique key, a placement the sweeper took)
 * fails alone, with the same error as on its own.
 */
export function orderRecorder(db: OrdersDb): (order: NewOrder) => Promise<RecordedRow[]> {
  return commitTogether(
    db,
    (session, o: NewOrder) =>
      recordOrder(session, o.values, ORDER_PLACED, OrderPlacedSchema, o.event),
    // The order id: for a keyed order it is derived from (user, key), so same-key
    // retries batched in two replicas meet in the same order.
    (o) => o.event.orderId ?? "",
  );
}

/**
 * PlaceOrder's record, one statement built once (every order runs it): the order
 * PENDING_PAYMENT, its lines (any number: a column of values per placeholder), its first
 * history entry and OrderPlaced; and the end of its placement. The order goes in first,
 * so a concurrent retry with the same key meets the order's unique key (and returns the
 * winner, above). Then the placements row goes; if it was gone already, the sweeper judged
 * this call dead and gave the stock back, and nothing of it may be recorded: the statement
 * fails (a division by zero, PostgreSQL having no assertion statement), all of it.
 * (The lines' and history's foreign keys are checked at the end of the statement, when the
 * order is there.)
 */
const recordOrder = statementWithEvent<RecordedRow>(
  (_db, insertEvent) => sql`
    with placed as (
      insert into ${orders} (id, user_id, status, total_amount, currency_code, idempotency_key)
      values (${sql.placeholder("id")}::uuid, ${sql.placeholder("userId")}::uuid, 'PENDING_PAYMENT',
        ${sql.placeholder("totalAmount")}::bigint, ${sql.placeholder("currencyCode")},
        ${sql.placeholder("idempotencyKey")})
      returning id, created_at, updated_at
    ), claimed as (
      delete from ${placements} where order_id = (select id from placed) returning 1
    ), lines as (
      insert into ${orderItems} (order_id, position, product_id, sku, name, quantity,
        unit_price_amount, line_total_amount)
      select placed.id, l.* from placed, unnest(
        ${sql.placeholder("positions")}::smallint[], ${sql.placeholder("productIds")}::uuid[],
        ${sql.placeholder("skus")}::text[], ${sql.placeholder("names")}::text[],
        ${sql.placeholder("quantities")}::int[], ${sql.placeholder("unitPrices")}::bigint[],
        ${sql.placeholder("lineTotals")}::bigint[]) as l
    ), history as (
      insert into ${orderHistory} (order_id, status, reason)
      select id, 'PENDING_PAYMENT', '' from placed
      returning seq, changed_at
    ), event as (
      ${insertEvent} from placed
    )
    select extract(epoch from placed.created_at)::float8 * 1000 as created_ms,
      extract(epoch from placed.updated_at)::float8 * 1000 as updated_ms,
      history.seq as history_seq,
      extract(epoch from history.changed_at)::float8 * 1000 as changed_ms,
      1 / (select count(*) from claimed)::int as placement_claimed
    from placed, history`,
);

/** Order lines as one array per column, for `recordOrder`'s unnest. */
function itemColumns(lines: OrderItemRow[]) {
  return {
    positions: lines.map((l) => l.position),
    productIds: lines.map((l) => l.productId),
    skus: lines.map((l) => l.sku),
    names: lines.map((l) => l.name),
    quantities: lines.map((l) => l.quantity),
    unitPrices: lines.map((l) => String(l.unitPriceAmount)),
    lineTotals: lines.map((l) => String(l.lineTotalAmount)),
  };
}

/**
 * The order id of (user, idempotency key): the same on every retry, so a retry after
 * a crash between the reservation and the commit (or a lost answer) reserves under the
 * same id, and the catalog, idempotent per order id, hands back the reservation it
 * already holds instead of taking the stock a second time. A UUID (version 8, RFC 9562)
 * from SHA-256.
 */
export function orderIdFor(userId: string, key: string): string {
  const h = createHash("sha256").update(`${userId}\n${key}`).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x80;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

async function findByKey(db: OrdersDb, userId: string, key: string) {
  const [row] = await db
    .select()
    .from(orders)
    .where(and(eq(orders.userId, userId), eq(orders.idempotencyKey, key)));
  return row === undefined ? undefined : loadOrderView(db, row);
}

type PricedItem = Omit<OrderItemRow, "orderId">;

/** Order lines and total from the catalog's reservation; the client sends no prices. */
function priceLines(lines: ReservedLine[]) {
  const currencies = [...new Set(lines.map((l) => l.unitPrice?.currencyCode ?? ""))];
  const currencyCode = currencies[0];
  if (currencies.length !== 1 || currencyCode === undefined || currencyCode === "") {
    throw new FailedPreconditionError(
      `the items are priced in different currencies (${currencies.join(", ")}); order them separately`,
    );
  }
  const items: PricedItem[] = lines.map((l, position) => {
    const unit = l.unitPrice?.amount ?? 0n;
    return {
      position,
      productId: l.productId,
      sku: l.sku,
      name: l.name,
      quantity: l.quantity,
      unitPriceAmount: unit,
      lineTotalAmount: unit * BigInt(l.quantity),
    };
  });
  const total = items.reduce((sum, i) => sum + i.lineTotalAmount, 0n);
  return { currencyCode, items, total };
}

/**
 * ReleaseStock on a path that is already failing: the original error is what the
 * caller needs to see. Returns whether the stock is back; when it is not, the
 * placements row stays and the sweeper releases it later.
 */
async function releaseQuietly(
  inventory: InventoryClient,
  orderId: string,
  logger: Logger,
): Promise<boolean> {
  try {
    await releaseStock(inventory, orderId);
    return true;
  } catch (err) {
    logger.error(
      { err, order_id: orderId },
      "compensation failed: ReleaseStock for an order that was not placed; the sweeper retries it",
    );
    return false;
  }
}

/**
 * Notes that stock is about to be reserved for an order (a retry restarts the clock). It
 * must commit before ReserveStock is sent; the notes of orders placed at the same time
 * commit together (ADR 0010): one transaction for those that came while one was in flight.
 */
export function placementNoter(db: OrdersDb): (orderId: string) => Promise<unknown> {
  return commitTogether(
    db,
    (session, orderId: string) => insertPlacement(session, { orderId }),
    (orderId) => orderId,
  );
}

/** Built once: every order runs it. */
const insertPlacement = reusable((db) =>
  db
    .insert(placements)
    .values({ orderId: sql.placeholder("orderId") })
    .onConflictDoUpdate({ target: placements.orderId, set: { startedAt: sql`now()` } })
    .prepare("orders_note_placement"),
);

async function forgetPlacement(db: OrdersDb, orderId: string) {
  await db.delete(placements).where(eq(placements.orderId, orderId));
}

/** The placements guard's failure: the sweeper took the row first. */
const DIVISION_BY_ZERO = "22012";

/** Postgres unique violation (23505) on `constraint`, through drizzle's error wrapping. */
function isConstraintViolation(err: unknown, constraint: string): boolean {
  const pg = pgErrorCode(err);
  return pg?.code === UNIQUE_VIOLATION && pg.constraint === constraint;
}
