/**
 * Typed errors and the one mapping from them to gRPC status codes and HTTP statuses.
 *
 * Handlers throw the small named classes below (with `{ cause }` for context); the
 * RPC boundary turns them into a status. Anything else becomes INTERNAL with a
 * generic message: the cause goes to the log, never to the wire.
 */
import { create, createRegistry, fromBinary, type Message, toBinary } from "@bufbuild/protobuf";
import { type Any, anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { StatusSchema } from "@shopmesh/gen/google/rpc/status_pb.js";

/** gRPC status codes (same numbers as grpc-js `status` and connect's `Code`). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type Code = (typeof Code)[keyof typeof Code];

const codeNames = Object.fromEntries(Object.entries(Code).map(([k, v]) => [v, k])) as Record<
  Code,
  keyof typeof Code
>;

/** The status name in lower snake case, as the Connect protocol and our JSON errors spell it. */
export function codeName(code: Code): string {
  return (codeNames[code] ?? "UNKNOWN").toLowerCase();
}

/**
 * HTTP status for a gRPC code: the Connect protocol's table, except FAILED_PRECONDITION,
 * which is 409 Conflict here (the request conflicts with the resource's current state:
 * not enough stock, an order that can no longer change), not 400 (nothing is wrong with
 * the request itself). Connect-protocol responses keep connect-node's own mapping.
 */
export function httpStatusFor(code: Code): number {
  switch (code) {
    case Code.OK:
      return 200;
    case Code.CANCELLED:
      return 499;
    case Code.INVALID_ARGUMENT:
    case Code.OUT_OF_RANGE:
      return 400;
    case Code.DEADLINE_EXCEEDED:
      return 504;
    case Code.NOT_FOUND:
      return 404;
    case Code.ALREADY_EXISTS:
    case Code.ABORTED:
    case Code.FAILED_PRECONDITION:
      return 409;
    case Code.PERMISSION_DENIED:
      return 403;
    case Code.RESOURCE_EXHAUSTED:
      return 429;
    case Code.UNIMPLEMENTED:
      return 501;
    case Code.UNAVAILABLE:
      return 503;
    case Code.UNAUTHENTICATED:
      return 401;
    default:
      return 500;
  }
}

/** Base class of every error that is meant to reach a caller as a status. */
export class ShopError extends Error {
  override name = "ShopError";
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown; details?: Message[] },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.details = options?.details ?? [];
  }
  /** Protobuf messages sent to the caller in grpc-status-details-bin (google.rpc.Status). */
  readonly details: Message[];
}

type Opts = { cause?: unknown };

export class NotFoundError extends ShopError {
  override name = "NotFoundError";
  constructor(message: string, o?: Opts) {
    super(Code.NOT_FOUND, message, o);
  }
}
export class AlreadyExistsError extends ShopError {
  override name = "AlreadyExistsError";
  constructor(message: string, o?: Opts) {
    super(Code.ALREADY_EXISTS, message, o);
  }
}
export class FailedPreconditionError extends ShopError {
  override name = "FailedPreconditionError";
  constructor(message: string, o?: Opts) {
    super(Code.FAILED_PRECONDITION, message, o);
  }
}
export class PermissionDeniedError extends ShopError {
  override name = "PermissionDeniedError";
  constructor(message = "permission denied", o?: Opts) {
    super(Code.PERMISSION_DENIED, message, o);
  }
}
export class UnauthenticatedError extends ShopError {
  override name = "UnauthenticatedError";
  constructor(message = "authentication required", o?: Opts) {
    super(Code.UNAUTHENTICATED, message, o);
  }
}
export class ResourceExhaustedError extends ShopError {
  override name = "ResourceExhaustedError";
  constructor(
    message: string,
    /** Seconds after which a retry may succeed (Retry-After at the edge). */
    readonly retryAfterSeconds?: number,
    o?: Opts,
  ) {
    super(Code.RESOURCE_EXHAUSTED, message, o);
  }
}
export class UnavailableError extends ShopError {
  override name = "UnavailableError";
  constructor(message: string, o?: Opts) {
    super(Code.UNAVAILABLE, message, o);
  }
}
export class AbortedError extends ShopError {
  override name = "AbortedError";
  constructor(message: string, o?: Opts) {
    super(Code.ABORTED, message, o);
  }
}

/** One broken field rule; `field` is the proto path, e.g. `items[0].quantity`. */
export interface FieldViolation {
  field: string;
  rule: string;
  message: string;
}

/** INVALID_ARGUMENT naming the fields, with buf.validate.Violations as a status detail. */
export class InvalidArgumentError extends ShopError {
  override name = "InvalidArgumentError";
  constructor(
    message: string,
    readonly violations: FieldViolation[] = [],
    o?: Opts & { details?: Message[] },
  ) {
    super(Code.INVALID_ARGUMENT, message, o);
  }
}

/**
 * An error received from another service. A fresh object, so nothing of the upstream
 * transport (metadata, stack of the other process) travels further by accident.
 */
export class RpcError extends ShopError {
  override name = "RpcError";
  constructor(
    code: Code,
    message: string,
    readonly method: string,
    details: Message[] = [],
    /** The upstream's Retry-After, passed on to our caller. */
    readonly retryAfterSeconds?: number,
  ) {
    super(code, message, { details });
  }
}

/** What the RPC boundary sends: code, message safe for the wire, and detail messages. */
export interface WireStatus {
  code: Code;
  message: string;
  details: Message[];
  retryAfterSeconds?: number;
  /** True when the error was unexpected and must be logged with its stack. */
  unexpected: boolean;
}

/** The single mapper from anything thrown to what a caller may see. */
export function toWireStatus(err: unknown): WireStatus {
  if (err instanceof ShopError) {
    // An upstream INTERNAL/UNKNOWN says nothing useful to our caller and may leak.
    if (err instanceof RpcError && (err.code === Code.INTERNAL || err.code === Code.UNKNOWN)) {
      return { code: Code.INTERNAL, message: "internal error", details: [], unexpected: true };
    }
    return {
      code: err.code,
      message: err.message,
      details: err.details,
      ...((err instanceof ResourceExhaustedError || err instanceof RpcError) &&
      err.retryAfterSeconds !== undefined
        ? { retryAfterSeconds: err.retryAfterSeconds }
        : {}),
      unexpected: false,
    };
  }
  return { code: Code.INTERNAL, message: "internal error", details: [], unexpected: true };
}

// Detail types we can put on and read off the wire.
const detailRegistry = createRegistry(ViolationsSchema);

/** google.rpc.Status bytes for the `grpc-status-details-bin` trailer. */
export function encodeStatusDetails(status: WireStatus): Uint8Array {
  return toBinary(
    StatusSchema,
    create(StatusSchema, {
      code: status.code,
      message: status.message,
      details: status.details.flatMap((d) => {
        const schema = detailRegistry.getMessage(d.$typeName);
        return schema === undefined ? [] : [anyPack(schema, d as never)];
      }),
    }),
  );
}

/** Decode `grpc-status-details-bin` into the detail messages we know (others are kept as Any). */
export function decodeStatusDetails(bytes: Uint8Array): Message[] {
  const status = fromBinary(StatusSchema, bytes);
  return status.details.map((any: Any) => anyUnpack(any, detailRegistry) ?? any);
}
