/**
 * `createOrderService(deps)`: OrderService's handlers, as a registration for the
 * runtime's `createGrpcServer`. PlaceOrder is in place-order.ts, the status changes
 * in state-machine.ts; this module authenticates, authorises and reads.
 *
 * Customers see and act on their own orders only: another user's order answers
 * NOT_FOUND, exactly like a missing one, so order ids cannot be probed. Admins see
 * and cancel every order.
 */
import { type ListOrdersRequest, OrderService } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { authenticate, type Claims, isAdmin, type TokenVerifier } from "@shopmesh/runtime/auth.js";
import { NotFoundError, PermissionDeniedError } from "@shopmesh/runtime/errors.js";
import { type ServiceRegistration, serve } from "@shopmesh/runtime/grpc-server.js";
import { and, desc, eq, type SQL, sql } from "drizzle-orm";
import type { OrdersDb } from "./db/database.js";
import { type OrderStatusName, orders } from "./db/schema.js";
import { type IdentityClient, type InventoryClient, userCheck } from "./downstream.js";
import {
  canSee,
  loadOrderView,
  loadOrderViews,
  lockOrder,
  orderToProto,
  statusFromProto,
} from "./order-view.js";
import { type ListScope, pageTokens } from "./page-token.js";
import { orderRecorder, placementNoter, placeOrder } from "./place-order.js";
import { cancelOrder } from "./state-machine.js";

export interface OrderDeps {
  db: OrdersDb;
  /** Verifies callers' tokens (identity's JWKS). */
  verifier: TokenVerifier;
  identity: IdentityClient;
  inventory: InventoryClient;
  /** How long identity's yes to "does this user exist" is remembered (USER_CHECK_TTL_MS). */
  userCheckTtlMs: number;
}

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export function createOrderService(deps: OrderDeps): ServiceRegistration {
  const { db, verifier } = deps;
  const placing = {
    ...deps,
    checkUser: userCheck(deps.identity, deps.userCheckTtlMs),
    notePlacement: placementNoter(db),
    recordOrder: orderRecorder(db),
  };

  return serve(OrderService, {
    async placeOrder(req, ctx) {
      const claims = await authenticate(ctx, verifier);
      const view = await placeOrder(placing, claims, req, ctx.logger);
      return { order: orderToProto(view) };
    },

    async getOrder(req, ctx) {
      const claims = await authenticate(ctx, verifier);
      const [row] = await db.select().from(orders).where(eq(orders.id, req.orderId));
      if (row === undefined || !canSee(claims, row)) throw notFound(req.orderId);
      return { order: orderToProto(await loadOrderView(db, row)) };
    },

    async listOrders(req, ctx) {
      const claims = await authenticate(ctx, verifier);
      return listOrders(db, req, listScope(claims, req));
    },

    async cancelOrder(req, ctx) {
      const claims = await authenticate(ctx, verifier);
      const view = await db.transaction(async (tx) => {
        // The row lock serialises this with the payment consumers: whichever comes
        // second sees the status the first one left.
        const order = await lockOrder(tx, req.orderId);
        if (order === undefined || !canSee(claims, order)) throw notFound(req.orderId);
        if (order.status === "CANCELLED") return loadOrderView(tx, order);
        const reason =
          req.reason.trim() ||
          (order.userId === claims.sub.toLowerCase()
            ? "cancelled by customer"
            : "cancelled by admin");
        return loadOrderView(tx, await cancelOrder(tx, deps.inventory, order, reason));
      });
      ctx.logger.info(
        { order_id: view.order.id, by: claims.sub, status: view.order.status },
        "order cancel requested",
      );
      return { order: orderToProto(view) };
    },
  });
}

function notFound(orderId: string) {
  return new NotFoundError(`order ${orderId} not found`);
}

/** Whose orders a caller lists: their own, or for admins everyone's or one user's. */
function listScope(claims: Claims, req: ListOrdersRequest): ListScope {
  const status = statusFromProto(req.status) ?? "";
  const requested = req.userId.toLowerCase();
  if (isAdmin(claims)) return { userId: requested, status };
  const own = claims.sub.toLowerCase();
  if (requested !== "" && requested !== own) {
    throw new PermissionDeniedError("customers may list only their own orders");
  }
  return { userId: own, status };
}

async function listOrders(db: OrdersDb, req: ListOrdersRequest, scope: ListScope) {
  const pageSize = Math.min(req.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  const where: SQL[] = [];
  if (scope.userId !== "") where.push(eq(orders.userId, scope.userId));
  if (scope.status !== "") where.push(eq(orders.status, scope.status as OrderStatusName));
  if (req.pageToken !== "") {
    const cursor = pageTokens.decode(req.pageToken, scope);
    // A row comparison matches ORDER BY created_at DESC, id DESC exactly.
    where.push(
      sql`(${orders.createdAt}, ${orders.id}) < (${cursor.createdAt.toISOString()}::timestamptz, ${cursor.id}::uuid)`,
    );
  }
  // One extra row tells whether another page exists without a count query.
  const rows = await db
    .select()
    .from(orders)
    .where(and(...where))
    .orderBy(desc(orders.createdAt), desc(orders.id))
    .limit(pageSize + 1);
  const page = rows.slice(0, pageSize);
  const last = page.at(-1);
  return {
    orders: (await loadOrderViews(db, page)).map(orderToProto),
    nextPageToken:
      rows.length > pageSize && last !== undefined
        ? pageTokens.encode({ createdAt: last.createdAt, id: last.id }, scope)
        : "",
  };
}
