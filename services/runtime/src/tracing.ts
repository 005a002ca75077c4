/**
 * Spans for the runtime's own paths: gRPC server and client calls, the edge's HTTP
 * handling, database statements, NATS publish and consume.
 *
 * The instrumentation is the runtime's (no monkey-patched libraries except drizzle's
 * prepared query, see tracing-db.ts): every span's parent is passed explicitly from the
 * current CallContext (`ctx.trace`), so the trace follows our own AsyncLocalStorage
 * and costs nothing extra when tracing is off. Off means no SDK registered
 * (telemetry.ts): the API's no-op tracer then returns non-recording spans that carry
 * the parent's span context, so an incoming `traceparent` still travels on unchanged.
 *
 * W3C trace context is read and written with the propagator directly (not the global
 * one, which is a no-op until an SDK registers), on gRPC metadata, HTTP headers, NATS
 * headers and outbox rows alike.
 */
import {
  type Attributes,
  type Context,
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

export { type Context as TraceContext, type Span, SpanKind };

const propagator = new W3CTraceContextPropagator();
const tracer = trace.getTracer("shopmesh");

/** The trace context carried by headers (`traceparent`, `tracestate`), or the root. */
export function extractTrace(get: (key: string) => string | undefined): Context {
  if (get("traceparent") === undefined) return ROOT_CONTEXT;
  return propagator.extract(ROOT_CONTEXT, undefined, {
    get: (_carrier, key) => get(key),
    keys: () => ["traceparent", "tracestate"],
  });
}

/** Writes `traceparent` (and `tracestate`) of `ctx`'s span through `set`, if it has one. */
export function injectTrace(ctx: Context | undefined, set: (key: string, value: string) => void) {
  if (ctx === undefined) return;
  propagator.inject(ctx, undefined, { set: (_carrier, key, value) => set(key, value) });
}

/** Trace context as a plain header record (for outbox rows and NATS headers). */
export function traceHeaders(ctx: Context | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  injectTrace(ctx, (k, v) => {
    out[k] = v;
  });
  return out;
}

export interface StartedSpan {
  span: Span;
  /** `parent` with this span set: the parent of everything done on its behalf. */
  context: Context;
}

/** Starts a span under `parent` (the root when undefined). */
export function startSpan(
  name: string,
  kind: SpanKind,
  parent: Context | undefined,
  attributes?: Attributes,
): StartedSpan {
  const p = parent ?? ROOT_CONTEXT;
  const span = tracer.startSpan(name, { kind, ...(attributes ? { attributes } : {}) }, p);
  return { span, context: trace.setSpan(p, span) };
}

/** A span that records nothing and has no trace (for paths that are not traced). */
export function untraced(): StartedSpan {
  const span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
  return { span, context: ROOT_CONTEXT };
}

/** Ends a span, marking it failed with `message` when `failed`. */
export function endSpan(span: Span, failed: boolean, message?: string) {
  if (failed) span.setStatus({ code: SpanStatusCode.ERROR, ...(message ? { message } : {}) });
  span.end();
}

/**
 * gRPC status codes that mark a *server* span as failed (OpenTelemetry's RPC
 * conventions): the caller's mistakes (INVALID_ARGUMENT, NOT_FOUND, ...) are not the
 * server's errors. Client spans fail on any non-OK code.
 */
const SERVER_ERROR_CODES = new Set([2, 4, 12, 13, 14, 15]);

export function endRpcSpan(span: Span, side: "server" | "client", code: number) {
  if (!span.isRecording()) return span.end();
  span.setAttribute("rpc.grpc.status_code", code);
  endSpan(span, side === "server" ? SERVER_ERROR_CODES.has(code) : code !== 0);
}

/** `trace_id` and `span_id` of the span in `ctx`, when it is a real (sampled or remote) one. */
export function traceIds(
  ctx: Context | undefined,
): { trace_id: string; span_id: string } | undefined {
  if (ctx === undefined) return undefined;
  const sc = trace.getSpanContext(ctx);
  if (sc === undefined || sc.traceId === "00000000000000000000000000000000") return undefined;
  return { trace_id: sc.traceId, span_id: sc.spanId };
}

/** `/shop.orders.v1.OrderService/PlaceOrder` → rpc.* attributes and the span name. */
export function rpcAttributes(path: string): { name: string; attributes: Attributes } {
  const [, service = "", method = ""] = path.split("/");
  return {
    name: `${service}/${method}`,
    attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method },
  };
}
