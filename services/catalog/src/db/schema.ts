/**
 * The catalog's tables (drizzle pg-core): `products`, `reservations` and
 * `reservation_lines`, plus the runtime's `outbox` (re-exported so that the
 * migrations create it; StockLow events go through it).
 *
 * Invariants live in the database as well as in the handlers: stock can never go
 * negative (CHECK), a sku is unique, and an order holds at most one reservation
 * (primary key), which is what makes ReserveStock idempotent under concurrency.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  index,
  integer,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";

export { outbox } from "@shopmesh/runtime/outbox.js";

export const products = pgTable(
  "products",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    sku: text("sku").notNull().unique("products_sku_unique"),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    /** Unit price in minor units of `currency_code` (cents for USD). */
    priceAmount: bigint("price_amount", { mode: "bigint" }).notNull(),
    currencyCode: text("currency_code").notNull(),
    /** Units on hand and not reserved. */
    stock: integer("stock").notNull().default(0),
    active: boolean("active").notNull().default(true),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    // The last line of defence: no code path, however buggy, can oversell.
    check("products_stock_non_negative", sql`${t.stock} >= 0`),
    check("products_price_non_negative", sql`${t.priceAmount} >= 0`),
    // ListProducts pages by (name, id).
    index("products_name_id").on(t.name, t.id),
  ],
);

export type ProductRow = typeof products.$inferSelect;

export const RESERVATION_STATUSES = ["reserved", "released"] as const;
export type ReservationStatus = (typeof RESERVATION_STATUSES)[number];

/** One row per order that ever reserved stock; the order id is the idempotency key. */
export const reservations = pgTable(
  "reservations",
  {
    orderId: uuid("order_id").primaryKey(),
    status: text("status", { enum: RESERVATION_STATUSES }).notNull().default("reserved"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    releasedAt: timestamp("released_at", { withTimezone: true }),
  },
  (t) => [check("reservations_status_valid", sql`${t.status} in ('reserved', 'released')`)],
);

/**
 * The reserved lines of an order with a snapshot of the product at reservation
 * time (price, and sku and name as the contract's ReservedLine reports them), so a
 * retried ReserveStock returns exactly what the first call did.
 */
export const reservationLines = pgTable(
  "reservation_lines",
  {
    orderId: uuid("order_id")
      .notNull()
      .references(() => reservations.orderId, { onDelete: "cascade" }),
    productId: uuid("product_id")
      .notNull()
      .references(() => products.id),
    /** Index of the line in the original request (responses keep request order). */
    position: smallint("position").notNull(),
    sku: text("sku").notNull(),
    name: text("name").notNull(),
    quantity: integer("quantity").notNull(),
    unitPriceAmount: bigint("unit_price_amount", { mode: "bigint" }).notNull(),
    currencyCode: text("currency_code").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.orderId, t.productId] }),
    check("reservation_lines_quantity_positive", sql`${t.quantity} > 0`),
    index("reservation_lines_product_id").on(t.productId),
  ],
);
