/**
 * The order state machine — orders owns it in the choreography saga:
 *
 *   PENDING_PAYMENT ──PaymentSucceeded──▶ CONFIRMED
 *         │                                   │
 *         └──PaymentFailed / CancelOrder──▶ CANCELLED ◀──CancelOrder──┘   (final)
 *
 * Every transition here runs inside the caller's transaction on a row locked with
 * `lockOrder`, and writes the status, one history entry and the event that announces it
 * (outbox) in one statement: either all of it commits or none of it does.
 */
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
} from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { type CommitWith, commitWith, pipelined } from "@shopmesh/runtime/db.js";
import { statementWithEvent, type Tx } from "@shopmesh/runtime/outbox.js";
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
 * A transition as one statement, for the caller to send (it holds the row lock): the new
 * status, with the payment that confirmed the order or why it was cancelled; its history
 * entry; and the event that announces it (outbox). Resolves with the order as it now is.
 */
async function transition<Desc extends DescMessage>(
  tx: Tx,
  order: OrderRow,
  to: keyof typeof moveTo,
  reason: string,
  /** What the new status records: the payment that confirmed the order, or why it was cancelled. */
  noted: string,
  event: { subject: string; schema: Desc; init: MessageInitShape<Desc> },
): Promise<OrderRow> {
  if (!canMove(order.status, to)) {
    throw new Error(`order ${order.id}: no transition ${order.status} -> ${to}`);
  }
  const { statement, column } = moveTo[to];
  const [changed] = await statement(
    tx,
    { id: order.id, noted, reason },
    event.subject,
    event.schema,
    event.init,
  );
  if (changed === undefined) throw new Error(`locked order ${order.id} vanished`);
  return { ...order, status: to, [column]: noted, updatedAt: new Date(changed.updated_ms) };
}

/** The transitions' statements, built once. */
const moveTo = {
  CONFIRMED: statusChange("CONFIRMED", "paymentId"),
  CANCELLED: statusChange("CANCELLED", "cancelReason"),
};

function statusChange(status: OrderStatusName, column: "paymentId" | "cancelReason") {
  const statement = statementWithEvent<{ updated_ms: number }>(
    (_db, insertEvent) => sql`
      with changed as (
        update ${orders} set status = ${status},
          ${sql.identifier(orders[column].name)} = ${sql.placeholder("noted")}, updated_at = now()
        where id = ${sql.placeholder("id")}
        returning id, updated_at
      ), history as (
        insert into ${orderHistory} (order_id, status, reason)
        select id, ${status}, ${sql.placeholder("reason")} from changed
      ), event as (
        ${insertEvent} from changed
      )
      select extract(epoch from updated_at)::float8 * 1000 as updated_ms from changed`,
  );
  return { statement, column };
}

/**
 * PENDING_PAYMENT → CONFIRMED with the captured payment, and OrderConfirmed: the last
 * statements of the caller's transaction, sent with its COMMIT.
 */
export function confirmOrder(tx: Tx, order: OrderRow, paymentId: string): CommitWith {
  return commitWith(() =>
    transition(tx, order, "CONFIRMED", "payment captured", paymentId, {
      subject: ORDER_CONFIRMED,
      schema: OrderConfirmedSchema,
      init: {
        orderId: order.id,
        userId: order.userId,
        total: { currencyCode: order.currencyCode, amount: order.totalAmount },
        paymentId,
      },
    }),
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
  return transition(tx, order, "CANCELLED", reason, reason, {
    subject: ORDER_CANCELLED,
    schema: OrderCancelledSchema,
    init: {
      orderId: order.id,
      userId: order.userId,
      reason,
      wasConfirmed: order.status === "CONFIRMED",
    },
  });
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
