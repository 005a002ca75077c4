/**
 * The context of one incoming RPC, carried through async work with AsyncLocalStorage
 * so that outgoing calls inherit its deadline and pass its metadata on without every
 * handler threading them by hand.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Context as TraceContext } from "@opentelemetry/api";
import type { Logger } from "./logger.js";

/**
 * Metadata keys passed from an incoming call to every outgoing call it makes. The
 * trace context (`traceparent`, `tracestate`) is not copied: each outgoing call writes
 * its own client span's (tracing.ts).
 */
export const PROPAGATED_HEADERS = ["authorization", "x-request-id"];

export interface CallContext {
  /** Full method path, e.g. `/shop.catalog.v1.CatalogService/GetProduct`. */
  readonly method: string;
  /** Absolute deadline of the call, if the caller set one. */
  readonly deadline: Date | undefined;
  /** Aborted when the caller cancels, the deadline passes, or the server shuts down a stream. */
  readonly signal: AbortSignal;
  /** The request id (x-request-id from the caller, or generated). */
  readonly requestId: string;
  /** A child logger bound to method and request id. */
  readonly logger: Logger;
  /** First value of an incoming metadata key (lower case), if any. */
  header(name: string): string | undefined;
  /**
   * The span of this call or event (OpenTelemetry context): the parent of the spans of
   * everything done on its behalf, and the trace context written on the events it causes.
   */
  readonly trace?: TraceContext;
  /** Caller identity, set by authentication middleware of the service (e.g. verified JWT claims). */
  auth?: unknown;
}

const storage = new AsyncLocalStorage<CallContext>();

/** The context of the RPC being handled on this async path, if any. */
export function currentCall(): CallContext | undefined {
  return storage.getStore();
}

/** Runs `fn` with `ctx` as the current call context. */
export function runWithCall<T>(ctx: CallContext, fn: () => T): T {
  return storage.run(ctx, fn);
}
