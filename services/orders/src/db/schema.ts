/**
 * The orders tables (drizzle pg-core): `orders`, `order_items` and `order_history`,
 * plus the runtime's `outbox` (OrderPlaced / OrderConfirmed / OrderCancelled go
 * through it) and `inbox` (payment events applied once), re-exported so that the
 * migrations create them.
 *
 * Invariants the database keeps as well as the handlers: a status is one of the
 * three, a user's idempotency key names at most one order, and amounts and
 * quantities are positive.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  check,
  index,
  integer,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  unique,
  uuid,
} from "drizzle-orm/pg-core";

export { inbox } from "@shopmesh/runtime/bus.js";
export { outbox } from "@shopmesh/runtime/outbox.js";

export const ORDER_STATUSES = ["PENDING_PAYMENT", "CONFIRMED", "CANCELLED"] as const;
export type OrderStatusName = (typeof ORDER_STATUSES)[number];

export const orders = pgTable(
  "orders",
  {
    id: uuid("id").primaryKey(),
    userId: uuid("user_id").notNull(),
    status: text("status", { enum: ORDER_STATUSES }).notNull(),
    /** Sum of the line totals, in minor units of `currency_code`. */
    totalAmount: bigint("total_amount", { mode: "bigint" }).notNull(),
    currencyCode: text("currency_code").notNull(),
    /** Set when payments reports a captured payment. Text: it is payments' id, not ours. */
    paymentId: text("payment_id"),
    cancelReason: text("cancel_reason"),
    /** The client's PlaceOrder idempotency key; NULLs never collide in the unique index. */
    idempotencyKey: text("idempotency_key"),
    // Millisecond precision, so a JS Date holds it exactly and the ListOrders page
    // token (which carries it) lands precisely on the row it came from.
    createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    unique("orders_user_idempotency_key").on(t.userId, t.idempotencyKey),
    check("orders_status_valid", sql`${t.status} in ('PENDING_PAYMENT', 'CONFIRMED', 'CANCELLED')`),
    check("orders_total_non_negative", sql`${t.totalAmount} >= 0`),
    // ListOrders: a user's orders newest first, and everyone's for admins.
    index("orders_user_created").on(t.userId, t.createdAt.desc(), t.id.desc()),
    index("orders_created").on(t.createdAt.desc(), t.id.desc()),
  ],
);

export type OrderRow = typeof orders.$inferSelect;

/** The priced lines of an order: a snapshot of the catalog's reservation. */
export const orderItems = pgTable(
  "order_items",
  {
    orderId: uuid("order_id")
      .notNull()
      .references(() => orders.id, { onDelete: "cascade" }),
    /** Index of the line in the request; items are returned in this order. */
    position: smallint("position").notNull(),
    productId: uuid("product_id").notNull(),
    sku: text("sku").notNull(),
    name: text("name").notNull(),
    quantity: integer("quantity").notNull(),
    /** In the order's currency (every line of an order shares it). */
    unitPriceAmount: bigint("unit_price_amount", { mode: "bigint" }).notNull(),
    lineTotalAmount: bigint("line_total_amount", { mode: "bigint" }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.orderId, t.productId] }),
    check("order_items_quantity_positive", sql`${t.quantity} > 0`),
  ],
);

export type OrderItemRow = typeof orderItems.$inferSelect;

/** One row per status an order entered (and notable events such as a refund). */
export const orderHistory = pgTable(
  "order_history",
  {
    /** Insertion order: entries of one transaction share changed_at. */
    seq: bigserial("seq", { mode: "number" }).primaryKey(),
    orderId: uuid("order_id")
      .notNull()
      .references(() => orders.id, { onDelete: "cascade" }),
    status: text("status", { enum: ORDER_STATUSES }).notNull(),
    reason: text("reason").notNull().default(""),
    changedAt: timestamp("changed_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("order_history_order_id").on(t.orderId, t.seq)],
);

export type OrderHistoryRow = typeof orderHistory.$inferSelect;

/**
 * Stock reserved at the catalog for an order not recorded yet: written before
 * ReserveStock, deleted in the transaction that records the order. A row left behind
 * (orders died between the two, or the compensating ReleaseStock failed) is an orphaned
 * reservation: the sweeper (placement-sweeper.ts) gives its stock back.
 */
export const placements = pgTable("placements", {
  orderId: uuid("order_id").primaryKey(),
  startedAt: timestamp("started_at", { withTimezone: true }).notNull().defaultNow(),
});
