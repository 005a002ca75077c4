/**
 * `createPaymentService(deps)`: PaymentService's gRPC handlers (read only; payments are
 * created and settled by the event consumers in events.ts), and `paymentToProto`.
 *
 * Visibility: an admin sees every payment; a customer sees only their own. Another
 * user's payment is NOT_FOUND rather than PERMISSION_DENIED, so ids cannot be probed.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type ListPaymentsRequest,
  type PaymentSchema,
  PaymentService,
  PaymentStatus,
} from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { authenticate, isAdmin, type TokenVerifier } from "@shopmesh/runtime/auth.js";
import { NotFoundError } from "@shopmesh/runtime/errors.js";
import { type ServiceRegistration, serve } from "@shopmesh/runtime/grpc-server.js";
import { and, desc, eq, type SQL, sql } from "drizzle-orm";
import type { PaymentsDb } from "./db/database.js";
import { type PaymentRow, payments, type PaymentStatus as RowStatus } from "./db/schema.js";
import { type ListScope, pageTokens } from "./page-token.js";

export interface PaymentServiceDeps {
  db: PaymentsDb;
  /** Verifies callers' tokens (identity's JWKS in production, test keys in tests). */
  verifier: TokenVerifier;
}

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

const STATUS_TO_PROTO: Record<RowStatus, PaymentStatus> = {
  PENDING: PaymentStatus.PENDING,
  CAPTURED: PaymentStatus.CAPTURED,
  FAILED: PaymentStatus.FAILED,
  REFUNDED: PaymentStatus.REFUNDED,
};

export function paymentToProto(row: PaymentRow): MessageInitShape<typeof PaymentSchema> {
  return {
    id: row.id,
    orderId: row.orderId,
    userId: row.userId,
    amount: { currencyCode: row.currencyCode, amount: row.amount },
    status: STATUS_TO_PROTO[row.status],
    failureReason: row.failureReason ?? "",
    providerReference: row.providerReference ?? "",
    attempts: row.attempts,
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
  };
}

/** The PaymentService registration, for createGrpcServer. */
export function createPaymentService(deps: PaymentServiceDeps): ServiceRegistration[] {
  const { db, verifier } = deps;
  return [
    serve(PaymentService, {
      async getPayment(req, ctx) {
        const claims = await authenticate(ctx, verifier);
        const [row] = await db.select().from(payments).where(eq(payments.id, req.paymentId));
        if (row === undefined || (row.userId !== claims.sub && !isAdmin(claims))) {
          throw new NotFoundError(`payment ${req.paymentId} not found`);
        }
        return { payment: paymentToProto(row) };
      },

      async listPayments(req, ctx) {
        const claims = await authenticate(ctx, verifier);
        return listPayments(db, req, {
          orderId: req.orderId,
          userId: req.userId,
          visibleTo: isAdmin(claims) ? "" : claims.sub,
        });
      },
    }),
  ];
}

async function listPayments(db: PaymentsDb, req: ListPaymentsRequest, scope: ListScope) {
  const pageSize = Math.min(req.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  const where: SQL[] = [];
  // A customer's own user is always part of the filter: asking for someone else's
  // user_id yields nothing, not their payments.
  if (scope.visibleTo !== "") where.push(eq(payments.userId, scope.visibleTo));
  if (scope.userId !== "") where.push(eq(payments.userId, scope.userId));
  if (scope.orderId !== "") where.push(eq(payments.orderId, scope.orderId));
  if (req.pageToken !== "") {
    const lastId = pageTokens.decode(req.pageToken, scope);
    // A row comparison matches ORDER BY created_at DESC, id DESC exactly; the cursor's
    // created_at is read from the row, at full microsecond precision.
    const cursor = sql`(select p.created_at, p.id from payments p where p.id = ${lastId}::uuid)`;
    where.push(sql`(${payments.createdAt}, ${payments.id}) < ${cursor}`);
  }
  // One extra row tells whether another page exists without a count query.
  const rows = await db
    .select()
    .from(payments)
    .where(and(...where))
    .orderBy(desc(payments.createdAt), desc(payments.id))
    .limit(pageSize + 1);
  const page = rows.slice(0, pageSize);
  const last = page.at(-1);
  return {
    payments: page.map(paymentToProto),
    nextPageToken:
      rows.length > pageSize && last !== undefined ? pageTokens.encode(last.id, scope) : "",
  };
}
