/**
 * The payments service's tables (drizzle pg-core): `payments`, one row per order,
 * plus the runtime's `outbox` (events it publishes) and `inbox` (events it applied),
 * re-exported so that the migrations create them.
 *
 * The UNIQUE order_id is what makes charging idempotent per order: however often
 * OrderPlaced arrives, and on however many replicas, there is one payment to settle.
 */
import { sql } from "drizzle-orm";
import { bigint, check, index, integer, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";

export { inbox } from "@shopmesh/runtime/bus.js";
export { outbox } from "@shopmesh/runtime/outbox.js";

export const PAYMENT_STATUSES = ["PENDING", "CAPTURED", "FAILED", "REFUNDED"] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

export const payments = pgTable(
  "payments",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    orderId: uuid("order_id").notNull().unique("payments_order_id_unique"),
    userId: uuid("user_id").notNull(),
    /** The order total in minor units of `currency_code`. */
    amount: bigint("amount", { mode: "bigint" }).notNull(),
    /** Empty when there was nothing to charge: an unusable total, or a cancel that came first. */
    currencyCode: text("currency_code").notNull(),
    status: text("status", { enum: PAYMENT_STATUSES }).notNull().default("PENDING"),
    /** Why it failed; set only when FAILED. */
    failureReason: text("failure_reason"),
    /** The provider's charge id, once the provider answered. */
    providerReference: text("provider_reference"),
    /** The provider's refund id, once REFUNDED. */
    refundReference: text("refund_reference"),
    /** Charge attempts made, across redeliveries. */
    attempts: integer("attempts").notNull().default(0),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    check(
      "payments_status_valid",
      sql`${t.status} in ('PENDING', 'CAPTURED', 'FAILED', 'REFUNDED')`,
    ),
    check("payments_amount_non_negative", sql`${t.amount} >= 0`),
    // ListPayments: newest first, for everyone (admin) or for one user (a customer).
    index("payments_created_at_id").on(t.createdAt, t.id),
    index("payments_user_id_created_at_id").on(t.userId, t.createdAt, t.id),
  ],
);

export type PaymentRow = typeof payments.$inferSelect;
