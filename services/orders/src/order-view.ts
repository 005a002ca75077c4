/**
 * Reading orders: `loadOrderViews` (orders with their items and history, in two
 * queries for any number of orders), `lockOrder` (SELECT ... FOR UPDATE), who may
 * see an order (`canSee`), and the conversions to the contract's messages
 * (`orderToProto`, `itemToProto`, status enum mapping).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type OrderItemSchema,
  type OrderSchema,
  OrderStatus,
} from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { type Claims, isAdmin } from "@shopmesh/runtime/auth.js";
import { reusable } from "@shopmesh/runtime/db.js";
import type { Tx } from "@shopmesh/runtime/outbox.js";
import { asc, eq, inArray, sql } from "drizzle-orm";
import {
  type OrderHistoryRow,
  type OrderItemRow,
  type OrderRow,
  type OrderStatusName,
  orderHistory,
  orderItems,
  orders,
} from "./db/schema.js";

/** An order with its lines and its history, oldest entry first. */
export interface OrderView {
  order: OrderRow;
  items: OrderItemRow[];
  history: OrderHistoryRow[];
}

export const STATUS_TO_PROTO: Record<OrderStatusName, OrderStatus> = {
  PENDING_PAYMENT: OrderStatus.PENDING_PAYMENT,
  CONFIRMED: OrderStatus.CONFIRMED,
  CANCELLED: OrderStatus.CANCELLED,
};

/** The stored status of a proto status; undefined for UNSPECIFIED ("any"). */
export function statusFromProto(status: OrderStatus): OrderStatusName | undefined {
  return (Object.keys(STATUS_TO_PROTO) as OrderStatusName[]).find(
    (name) => STATUS_TO_PROTO[name] === status,
  );
}

/** The owner and admins see an order; to anyone else it does not exist. */
export function canSee(claims: Claims, order: OrderRow): boolean {
  return order.userId === claims.sub.toLowerCase() || isAdmin(claims);
}

/** The order row, locked until the transaction ends (status changes take turns). */
export async function lockOrder(tx: Tx, orderId: string): Promise<OrderRow | undefined> {
  const [row] = await selectForUpdate(tx, { id: orderId });
  return row;
}

/** Built once: every consumed payment event runs it. */
const selectForUpdate = reusable((db) =>
  db
    .select()
    .from(orders)
    .where(eq(orders.id, sql.placeholder("id")))
    .for("update")
    .prepare("orders_lock_order"),
);

/** Items and history of `rows`, keeping the order of `rows`. */
export async function loadOrderViews(db: Tx, rows: OrderRow[]): Promise<OrderView[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const items = await db
    .select()
    .from(orderItems)
    .where(inArray(orderItems.orderId, ids))
    .orderBy(asc(orderItems.orderId), asc(orderItems.position));
  const history = await db
    .select()
    .from(orderHistory)
    .where(inArray(orderHistory.orderId, ids))
    .orderBy(asc(orderHistory.seq));
  return rows.map((order) => ({
    order,
    items: items.filter((i) => i.orderId === order.id),
    history: history.filter((h) => h.orderId === order.id),
  }));
}

export async function loadOrderView(db: Tx, row: OrderRow): Promise<OrderView> {
  const [view] = await loadOrderViews(db, [row]);
  if (view === undefined) throw new Error(`order ${row.id} vanished`);
  return view;
}

export function itemToProto(
  item: OrderItemRow,
  currencyCode: string,
): MessageInitShape<typeof OrderItemSchema> {
  return {
    productId: item.productId,
    sku: item.sku,
    name: item.name,
    quantity: item.quantity,
    unitPrice: { currencyCode, amount: item.unitPriceAmount },
    lineTotal: { currencyCode, amount: item.lineTotalAmount },
  };
}

export function orderToProto({ order, items, history }: OrderView) {
  return {
    id: order.id,
    userId: order.userId,
    status: STATUS_TO_PROTO[order.status],
    items: items.map((i) => itemToProto(i, order.currencyCode)),
    total: { currencyCode: order.currencyCode, amount: order.totalAmount },
    paymentId: order.paymentId ?? "",
    cancelReason: order.cancelReason ?? "",
    history: history.map((h) => ({
      status: STATUS_TO_PROTO[h.status],
      changeTime: timestampFromDate(h.changedAt),
      reason: h.reason,
    })),
    createTime: timestampFromDate(order.createdAt),
    updateTime: timestampFromDate(order.updatedAt),
  } satisfies MessageInitShape<typeof OrderSchema>;
}
