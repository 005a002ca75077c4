/**
 * The services orders calls over gRPC — identity (does the user exist) and the
 * catalog's InventoryService (reserve and release stock) — and `fromDownstream`,
 * which turns their errors into errors of our own at the boundary.
 */
import type { InventoryService } from "@shopmesh/gen/shop/catalog/v1/inventory_pb.js";
import type { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { Code, RpcError, ShopError, UnavailableError } from "@shopmesh/runtime/errors.js";
import { ExpiringMap } from "@shopmesh/runtime/expiring-map.js";
import type { Client } from "@shopmesh/runtime/grpc-client.js";

export type IdentityClient = Pick<Client<typeof IdentityService>, "getUser">;
export type InventoryClient = Pick<
  Client<typeof InventoryService>,
  "reserveStock" | "releaseStock"
>;

/** Every call to another service is bounded; the runtime also caps it by our caller's deadline. */
export const DOWNSTREAM_TIMEOUT_MS = 3_000;

// The downstream's verdict on the request itself: our caller gets the same code and
// message (e.g. NOT_FOUND "product … not found", FAILED_PRECONDITION "insufficient
// stock for …"), which the edge maps to 404 / 400.
const PASSED_ON: ReadonlySet<number> = new Set([
  Code.NOT_FOUND,
  Code.FAILED_PRECONDITION,
  Code.INVALID_ARGUMENT,
  Code.ALREADY_EXISTS,
  Code.OUT_OF_RANGE,
]);

// The downstream could not answer: worth retrying later.
const TRANSIENT: ReadonlySet<number> = new Set([
  Code.UNAVAILABLE,
  Code.DEADLINE_EXCEEDED,
  Code.RESOURCE_EXHAUSTED,
  Code.ABORTED,
]);

/**
 * A fresh error for what `service` answered. Anything else (UNAUTHENTICATED from
 * identity for a token we accepted, INTERNAL, ...) is our problem, not the caller's,
 * and becomes INTERNAL with the details in the log only.
 */
export function fromDownstream(service: string, err: unknown): Error {
  if (err instanceof RpcError) {
    if (PASSED_ON.has(err.code)) {
      return new ShopError(err.code, err.message, { cause: err, details: err.details });
    }
    if (TRANSIENT.has(err.code)) {
      return new UnavailableError(`${service} is unavailable; try again`, { cause: err });
    }
    return new Error(`${service} failed: ${err.message} (code ${err.code})`, { cause: err });
  }
  // The client's circuit breaker refuses calls while the downstream keeps failing.
  if (err instanceof UnavailableError) {
    return new UnavailableError(`${service} is unavailable; try again`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** Checks that a user exists (PlaceOrder's step 2); resolves, or throws our own error. */
export type UserCheck = (userId: string) => Promise<void>;

/**
 * identity's GetUser, with a yes remembered for `ttlMs` per user (0: asked on every
 * order). Users are never deleted or disabled through any RPC, so a user identity knew a
 * minute ago still exists; remembering saves a gRPC call and an identity query on every
 * order after a user's first (ADR 0008). A no (NOT_FOUND) or a failure is never
 * remembered: a user who just registered is known at once.
 */
export function userCheck(identity: IdentityClient, ttlMs: number, max = 100_000): UserCheck {
  const known = new ExpiringMap<string, true>(max);
  return async (userId) => {
    if (known.get(userId) !== undefined) return;
    try {
      await identity.getUser({ userId });
    } catch (err) {
      throw fromDownstream("identity", err);
    }
    if (ttlMs > 0) known.set(userId, true, Date.now() + ttlMs);
  };
}

/**
 * True when a failed call may still have taken effect downstream: the deadline
 * passed or the connection broke after the request was sent. A refusal (NOT_FOUND,
 * FAILED_PRECONDITION, ...) means the catalog rolled back and nothing was reserved.
 */
export function outcomeUnknown(err: unknown): boolean {
  return !(err instanceof RpcError && PASSED_ON.has(err.code));
}

/** ReleaseStock, failing with our own error (idempotent: a no-op when nothing is held). */
export async function releaseStock(inventory: InventoryClient, orderId: string): Promise<boolean> {
  try {
    const res = await inventory.releaseStock({ orderId });
    return res.released;
  } catch (err) {
    throw fromDownstream("catalog", err);
  }
}
