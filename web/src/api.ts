/**
 * The storefront's clients, generated from the same protos as the services: Connect
 * (JSON over fetch) for everything, and gRPC-Web (binary) for the product list, to
 * show the edge speaks both to a browser. Tokens live in memory only (session.ts);
 * an interceptor adds them, refreshes before they expire and once more on a 401.
 */

import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { NotificationService } from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { OrderService } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { PaymentService } from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { SessionExpired, session } from "./session.js";

const baseUrl = location.origin;

/** Methods that carry no token (they create or renew one). */
const TOKENLESS = new Set(["Register", "Login", "Refresh"]);

const auth: Interceptor = (next) => async (req) => {
  if (TOKENLESS.has(req.method.name) || !session.signedIn()) return next(req);
  req.header.set("authorization", `Bearer ${await session.accessToken()}`);
  try {
    return await next(req);
  } catch (err) {
    // A token that expired in flight (or a clock far off): renew once and retry.
    const e = ConnectError.from(err);
    if (e.code !== Code.Unauthenticated || req.stream || !session.signedIn()) throw err;
    req.header.set("authorization", `Bearer ${await session.accessToken(true)}`);
    return await next(req);
  }
};

const connect = createConnectTransport({ baseUrl, interceptors: [auth] });
const grpcWeb = createGrpcWebTransport({ baseUrl, useBinaryFormat: true, interceptors: [auth] });

export const identity: Client<typeof IdentityService> = createClient(IdentityService, connect);
export const catalog: Client<typeof CatalogService> = createClient(CatalogService, connect);
/** The product list travels over gRPC-Web (application/grpc-web+proto). */
export const catalogGrpcWeb: Client<typeof CatalogService> = createClient(CatalogService, grpcWeb);
export const orders: Client<typeof OrderService> = createClient(OrderService, connect);
export const payments: Client<typeof PaymentService> = createClient(PaymentService, connect);
export const notifications: Client<typeof NotificationService> = createClient(
  NotificationService,
  connect,
);

/** One sentence for the person in front of the screen, for any error the API returns. */
export function describeError(err: unknown): string {
  if (err instanceof SessionExpired) return err.message;
  const e = ConnectError.from(err);
  const msg = e.rawMessage;
  switch (e.code) {
    case Code.ResourceExhausted: {
      const wait = e.metadata.get("retry-after");
      const when = wait ? ` Try again in ${wait} s.` : " Try again later.";
      if (/rate limit/i.test(msg)) return `Too many requests: please slow down.${when}`;
      if (/failed logins/i.test(msg)) return `Too many failed sign-ins for this email.${when}`;
      return `Too much at once: ${msg}.`;
    }
    case Code.FailedPrecondition: {
      const stock = /insufficient stock for (\S+) .*available (\d+)/.exec(msg);
      if (stock) return `Out of stock: only ${stock[2]} of ${stock[1]} left. Lower the quantity.`;
      if (/not active/.test(msg)) return "That product is no longer sold.";
      return `Not possible right now: ${msg}.`;
    }
    case Code.Unauthenticated:
      return /credentials|password/i.test(msg)
        ? "Wrong email or password."
        : "Your session expired. Please sign in again.";
    case Code.PermissionDenied:
      return "You are not allowed to do that (admin only).";
    case Code.AlreadyExists:
      return /email/.test(msg) ? "An account with this email already exists." : `${msg}.`;
    case Code.NotFound:
      return `Not found: ${msg}.`;
    case Code.InvalidArgument: {
      const violations = e.findDetails(ViolationsSchema).flatMap((v) => v.violations);
      if (violations.length === 0) return `Please check your input: ${msg}.`;
      return `Please check your input: ${violations
        .map((v) => {
          const path = v.field?.elements.map((el) => el.fieldName).join(".");
          return path ? `${path} ${v.message}` : v.message;
        })
        .join("; ")}.`;
    }
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return "The shop is not answering right now. Please try again in a moment.";
    case Code.Canceled:
      return "Cancelled.";
    default:
      return `Something went wrong (${Code[e.code]}): ${msg}`;
  }
}
