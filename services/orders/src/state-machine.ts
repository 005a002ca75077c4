/**
 * The order state machine — orders owns it in the choreography saga:
 *
 *   PENDING_PAYMENT ──PaymentSucceeded──▶ CONFIRMED
 *         │                                   │
 *         └──PaymentFailed / CancelOrder──▶ CANCELLED ◀──CancelOrder──┘   (final)
 *
 * Every transition here runs inside the caller's transaction on a row locked with
 * `lockOrder`, writes the status, one history entry and the event that announces it
 * (outbox) together: either all of it commits or none of it does.
 */
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
} from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { type CommitWith, commitWith, pipelined, reusable } from "@shopmesh/runtime/db.js";
import { enqueueEvent, type Tx } from "@shopmesh/runtime/outbox.js";
import { eq, sql } from "drizzle-orm";
import { type OrderRow, type OrderStatusName, orderHistory, orders } from "./db/schema.js";
import { type InventoryClient, releaseStock } from "./downstream.js";

export const ORDER_PLACED = "shop.orders.order_placed";
export const ORDER_CONFIRMED = "shop.orders.order_confirmed";
export const ORDER_CANCELLED = "shop.orders.order_cancelled";

/** Which status may follow which. CANCELLED is final. */
const NEXT: Record<OrderStatusName, readonly OrderStatusName[]> = {
  PENDING_PAYMENT: ["CONFIRMED", "CANCELLED"],
  CONFIRMED: ["CANCELLED"],
  CANCELLED: [],
};

export function canMove(from: OrderStatusName, to: OrderStatusName): boolean {
  return NEXT[from].includes(to);
}

/**
 * The statements of a transition: the new status (returning the row), its history
 * entry, and the event that announces it. The caller holds the row lock and sends them
 * together, `pipelined` or, as the last thing its transaction does, with `commitWith`.
 */
function transition(
  tx: Tx,
  order: OrderRow,
  to: keyof typeof moveTo,
  reason: string,
  /** What the new status records: the payment that confirmed the order, or why it was cancelled. */
  noted: string,
  announce: () => Promise<string>,
) {
  if (!canMove(order.status, to)) {
    throw new Error(`order ${order.id}: no transition ${order.status} -> ${to}`);
  }
  return [
    () => moveTo[to](tx, order.id, noted),
    () => recordStatus(tx, { orderId: order.id, status: to, reason }),
    announce,
  ] as const;
}

/**
 * The statements of a transition, built once: the order's new status, with the payment
 * that confirmed it or why it was cancelled,
 */
const moveTo = {
  CONFIRMED: statusChange("CONFIRMED", "paymentId"),
  CANCELLED: statusChange("CANCELLED", "cancelReason"),
};

function statusChange(status: OrderStatusName, column: "paymentId" | "cancelReason") {
  const statement = reusable((db) =>
    db
      .update(orders)
      .set({ status, [column]: sql`${sql.placeholder("noted")}`, updatedAt: sql`now()` })
      .where(eq(orders.id, sql.placeholder("id")))
      .returning()
      .prepare(`orders_to_${status.toLowerCase()}`),
  );
  return (tx: Tx, id: string, noted: string) => statement(tx, { id, noted });
}

/** and its history entry (PlaceOrder writes the first). */
export const recordStatus = reusable((db) =>
  db
    .insert(orderHistory)
    .values({
      orderId: sql.placeholder("orderId"),
      status: sql.placeholder("status"),
      reason: sql.placeholder("reason"),
    })
    .returning()
    .prepare("orders_record_status"),
);

/**
 * PENDING_PAYMENT → CONFIRMED with the captured payment, and OrderConfirmed: the last
 * statements of the caller's transaction, sent with its COMMIT.
 */
export function confirmOrder(tx: Tx, order: OrderRow, paymentId: string): CommitWith {
  return commitWith(
    ...transition(tx, order, "CONFIRMED", "payment captured", paymentId, () =>
      enqueueEvent(tx, ORDER_CONFIRMED, OrderConfirmedSchema, {
        orderId: order.id,
        userId: order.userId,
        total: { currencyCode: order.currencyCode, amount: order.totalAmount },
        paymentId,
      }),
    ),
  );
}

/**
 * PENDING_PAYMENT or CONFIRMED → CANCELLED, and OrderCancelled (payments refunds a
 * captured payment on it).
 *
 * Compensation of ReserveStock: the stock goes back to the catalog first, while the
 * row lock is held and before the status changes. If the catalog cannot be reached
 * the whole transaction rolls back — the order stays as it was and the caller (a
 * user retrying, or the bus redelivering PaymentFailed) tries again; releasing is
 * idempotent, so a retry after a lost answer is harmless. Releasing under the lock
 * also means stock is never returned for an order that a concurrent payment event
 * confirmed meanwhile.
 */
export async function cancelOrder(
  tx: Tx,
  inventory: InventoryClient,
  order: OrderRow,
  reason: string,
): Promise<OrderRow> {
  await releaseStock(inventory, order.id);
  const [[row]] = await pipelined(
    ...transition(tx, order, "CANCELLED", reason, reason, () =>
      enqueueEvent(tx, ORDER_CANCELLED, OrderCancelledSchema, {
        orderId: order.id,
        userId: order.userId,
        reason,
        wasConfirmed: order.status === "CONFIRMED",
      }),
    ),
  );
  if (row === undefined) throw new Error(`locked order ${order.id} vanished`);
  return row;
}

/** A refund went through: noted in the history; the status (CANCELLED) stays. */
export async function noteRefund(tx: Tx, order: OrderRow): Promise<void> {
  await pipelined(
    () =>
      tx
        .insert(orderHistory)
        .values({ orderId: order.id, status: order.status, reason: "payment refunded" }),
    () => tx.update(orders).set({ updatedAt: sql`now()` }).where(eq(orders.id, order.id)),
  );
}
