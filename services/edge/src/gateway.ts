/**
 * What the edge exposes and to whom: the public services, which methods need no
 * token, which need the admin role, and the admission check (token, role, rate
 * limit) that REST and RPC requests alike pass before a downstream call.
 */
import type { DescMessage, DescMethod, DescService, MessageShape } from "@bufbuild/protobuf";
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { NotificationService } from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { OrderService } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { PaymentService } from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import {
  bearerToken,
  type CallOptions,
  type Claims,
  createGrpcClient,
  isAdmin,
  PermissionDeniedError,
  ResourceExhaustedError,
  type TokenVerifier,
  UnauthenticatedError,
} from "@shopmesh/runtime";
import type { EdgeConfig } from "./config.js";
import type { RateLimiter } from "./rate-limit.js";

/** The services reachable from outside. Internal ones (InventoryService, KeyService) are not. */
export const PUBLIC_SERVICES: DescService[] = [
  IdentityService,
  CatalogService,
  OrderService,
  PaymentService,
  NotificationService,
];

const name = (s: DescService, m: string) => `${s.typeName}/${m}`;

/** Methods anyone may call without a token. */
const ANONYMOUS = new Set([
  name(IdentityService, "Register"),
  name(IdentityService, "Login"),
  name(IdentityService, "Refresh"),
  name(CatalogService, "ListProducts"),
  name(CatalogService, "GetProduct"),
]);

/** Methods only admins may call (the services check again: defence in depth). */
const ADMIN_ONLY = new Set([
  name(IdentityService, "ListUsers"),
  name(CatalogService, "CreateProduct"),
  name(CatalogService, "UpdateProduct"),
  name(CatalogService, "AdjustStock"),
]);

export const methodName = (m: DescMethod) => name(m.parent, m.name);
export const isAnonymous = (m: DescMethod) => ANONYMOUS.has(methodName(m));

export interface Admission {
  method: DescMethod;
  authorization: string | undefined;
  clientIp: string;
}

/** Token, role and rate limit. Throws the runtime's errors; returns the caller, if any. */
export async function admit(
  a: Admission,
  verifier: TokenVerifier,
  limiter: RateLimiter,
): Promise<Claims | undefined> {
  let claims: Claims | undefined;
  if (a.authorization !== undefined && a.authorization !== "") {
    const token = bearerToken(a.authorization);
    if (token === undefined) throw new UnauthenticatedError("malformed authorization header");
    claims = await verifier.verify(token);
  }
  const full = methodName(a.method);
  if (claims === undefined && !ANONYMOUS.has(full)) {
    throw new UnauthenticatedError("missing bearer token");
  }
  if (ADMIN_ONLY.has(full) && (claims === undefined || !isAdmin(claims))) {
    throw new PermissionDeniedError("admin role required");
  }
  const wait = limiter.take(claims ? `user:${claims.sub}` : `ip:${a.clientIp}`);
  if (wait > 0) throw new ResourceExhaustedError("rate limit exceeded", wait);
  return claims;
}

type AnyUnary = (req: unknown, o?: CallOptions) => Promise<MessageShape<DescMessage>>;
type AnyStream = (req: unknown, o?: CallOptions) => AsyncIterable<MessageShape<DescMessage>>;

export interface Downstreams {
  unary(method: DescMethod): AnyUnary;
  stream(method: DescMethod): AnyStream;
  close(): void;
}

/** One grpc-js client per public service, at the addresses from config. */
export function createDownstreams(config: EdgeConfig): Downstreams {
  const addresses: Record<string, string> = {
    [IdentityService.typeName]: config.IDENTITY_ADDR,
    [CatalogService.typeName]: config.CATALOG_ADDR,
    [OrderService.typeName]: config.ORDERS_ADDR,
    [PaymentService.typeName]: config.PAYMENTS_ADDR,
    [NotificationService.typeName]: config.NOTIFICATIONS_ADDR,
  };
  const clients = new Map<string, Record<string, unknown>>();
  for (const service of PUBLIC_SERVICES) {
    const address = addresses[service.typeName];
    if (address === undefined) throw new Error(`no address for ${service.typeName}`);
    clients.set(
      service.typeName,
      createGrpcClient(service as never, address, { timeoutMs: config.EDGE_TIMEOUT_MS }) as Record<
        string,
        unknown
      >,
    );
  }
  const fn = (method: DescMethod) => {
    const f = clients.get(method.parent.typeName)?.[method.localName];
    if (typeof f !== "function") throw new Error(`no downstream for ${methodName(method)}`);
    return f;
  };
  return {
    unary: (m) => fn(m) as AnyUnary,
    stream: (m) => fn(m) as AnyStream,
    close() {
      for (const c of clients.values()) (c["close"] as () => void)();
    },
  };
}
