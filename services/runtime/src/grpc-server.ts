/**
 * Serves generated protobuf-es services (GenService) on @grpc/grpc-js with typed
 * async handlers. Every server also serves grpc.health.v1 and server reflection.
 *
 * Requests are decoded inside our wrapper (not by grpc-js) so that malformed bytes
 * become INVALID_ARGUMENT, and validated with protovalidate before the handler runs.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import type { Attributes } from "@opentelemetry/api";
import { type CallContext, runWithCall } from "./context.js";
import { Code, encodeStatusDetails, InvalidArgumentError, toWireStatus } from "./errors.js";
import { createHealth, type Health } from "./health.js";
import { childWhenUsed, type Logger } from "./logger.js";
import { observeGrpcServerCall } from "./metrics.js";
import { createReflectionServices } from "./reflection.js";
import {
  endRpcSpan,
  extractTrace,
  rpcAttributes,
  type Span,
  SpanKind,
  startSpan,
  untraced,
} from "./tracing.js";
import { validateMessage } from "./validation.js";

type MethodImpl<M> = M extends {
  methodKind: "unary";
  input: infer I extends DescMessage;
  output: infer O extends DescMessage;
}
  ? (req: MessageShape<I>, ctx: CallContext) => Promise<MessageInitShape<O>> | MessageInitShape<O>
  : M extends {
        methodKind: "server_streaming";
        input: infer I extends DescMessage;
        output: infer O extends DescMessage;
      }
    ? (req: MessageShape<I>, ctx: CallContext) => AsyncIterable<MessageInitShape<O>>
    : M extends {
          methodKind: "bidi_streaming";
          input: infer I extends DescMessage;
          output: infer O extends DescMessage;
        }
      ? (
          reqs: AsyncIterable<MessageShape<I>>,
          ctx: CallContext,
        ) => AsyncIterable<MessageInitShape<O>>
      : never;

/** Handlers for every method of a generated service, keyed by the method's local name. */
export type ServiceImpl<S> =
  S extends GenService<infer M extends GenServiceMethods>
    ? { [K in keyof M]: MethodImpl<M[K]> }
    : never;

/** A service and its handlers, as passed to createGrpcServer. */
export interface ServiceRegistration {
  service: DescService;
  impl: Record<string, unknown>;
}

/** Pairs a generated service with its handlers, type-checked against the contract. */
export function serve<S extends GenService<GenServiceMethods>>(
  service: S,
  impl: ServiceImpl<S>,
): ServiceRegistration {
  return { service: service as unknown as DescService, impl: impl as Record<string, unknown> };
}

export interface GrpcServerOptions {
  logger: Logger;
  services: ServiceRegistration[];
  /** Longest time shutdown waits for in-flight calls before cancelling them. Default 10 s. */
  drainTimeoutMs?: number;
  /**
   * After this long a client connection is told to go (GOAWAY, with no limit on the
   * calls and streams already on it): the client opens a new one for its next call and
   * resolves the address again, so replicas added since (an HPA scaling out, found
   * through a headless Service's DNS) get their share. Default 2 min, ±10 % jitter.
   */
  maxConnectionAgeMs?: number;
  /** Extra grpc-js channel options (message size limits, keepalive). */
  channelOptions?: grpc.ServerOptions;
}

export interface GrpcServer {
  /** Binds `host:port` (port 0 picks a free one) and resolves to the bound port. */
  listen(port: number, host?: string): Promise<number>;
  readonly health: Health;
  /** NOT_SERVING, stop accepting, drain in-flight calls within the bound, then close. */
  shutdown(): Promise<void>;
}

/** Builds a grpc-js server for the given services, plus health and reflection. */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const { logger } = options;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
    "grpc.max_connection_age_ms": options.maxConnectionAgeMs ?? 120_000,
    ...options.channelOptions,
  });
  const health = createHealth(options.services.map((s) => s.service.typeName));
  // Streams are told to end when shutdown starts; unary calls are left to finish.
  const closing = new AbortController();
  const registrations = [
    ...options.services,
    health.registration,
    ...createReflectionServices([
      ...options.services.map((s) => s.service),
      health.registration.service,
    ]),
  ];
  for (const { service, impl } of registrations) {
    const definition: grpc.UntypedServiceImplementation = {};
    for (const method of service.methods) {
      const handler = impl[method.localName];
      if (typeof handler !== "function") {
        throw new Error(`${service.typeName}: no handler for ${method.name}`);
      }
      definition[method.localName] = wrap(method, handler as AnyHandler, logger, closing.signal);
    }
    server.addService(grpcDefinition(service), definition);
  }

  return {
    health,
    async listen(port, host = "0.0.0.0") {
      const bound = await new Promise<number>((resolve, reject) => {
        server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
          err ? reject(err) : resolve(p),
        );
      });
      health.setAll(true);
      return bound;
    },
    async shutdown() {
      health.setAll(false);
      const drained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      // Give Watch streams a moment to deliver NOT_SERVING, then end streams.
      const endStreams = setTimeout(() => closing.abort(), 100);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), drainTimeoutMs);
      });
      if ((await Promise.race([drained, timedOut])) === "timeout") {
        logger.warn({ drainTimeoutMs }, "drain bound reached; cancelling in-flight calls");
        server.forceShutdown();
      }
      clearTimeout(timer);
      clearTimeout(endStreams);
      closing.abort();
    },
  };
}

/** grpc-js service definition for a protobuf-es service: paths and binary codecs. */
export function grpcDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      originalName: method.name,
      requestStream:
        method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream:
        method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      // The server decodes in its own wrapper, to answer INVALID_ARGUMENT on bad bytes.
      requestSerialize: (msg) =>
        Buffer.from(toBinary(method.input, msg as MessageShape<DescMessage>)),
      requestDeserialize: (bytes: Buffer) => bytes,
      responseSerialize: (msg) =>
        Buffer.from(toBinary(method.output, msg as MessageShape<DescMessage>)),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
    };
  }
  return definition;
}

type AnyHandler = (req: unknown, ctx: CallContext) => unknown;
type AnyCall = grpc.ServerUnaryCall<Buffer, unknown> & {
  on(event: "cancelled", l: () => void): unknown;
};

function decode(method: DescMethod, bytes: Buffer): MessageShape<DescMessage> {
  let msg: MessageShape<DescMessage>;
  try {
    msg = fromBinary(method.input, bytes);
  } catch (cause) {
    throw new InvalidArgumentError(`malformed ${method.input.name}: not valid protobuf`, [], {
      cause,
    });
  }
  validateMessage(method.input, msg);
  return msg;
}

/** What a call's context needs of its method, computed once per method. */
interface MethodInfo {
  path: string;
  span: { name: string; attributes: Attributes };
  /** Health checks and reflection (probes, grpcurl) are not traced. */
  traced: boolean;
}

function methodInfo(method: DescMethod): MethodInfo {
  const path = `/${method.parent.typeName}/${method.name}`;
  return {
    path,
    span: rpcAttributes(path),
    traced: !method.parent.typeName.startsWith("grpc."),
  };
}

/**
 * The CallContext of one incoming call. Its abort signal and child logger are made on
 * first use: most unary handlers touch neither, and both cost more than the rest of
 * the context together.
 */
function callContext(
  call: AnyCall,
  info: MethodInfo,
  logger: Logger,
  extraAbort?: AbortSignal,
): { ctx: CallContext; span: Span } {
  const header = (name: string) => {
    const v = call.metadata.get(name)[0];
    return v === undefined ? undefined : v.toString();
  };
  const requestId = header("x-request-id") ?? randomUUID();
  const d = call.getDeadline();
  const deadline = d instanceof Date ? d : Number.isFinite(d) ? new Date(d as number) : undefined;
  const { span, context } = info.traced
    ? startSpan(info.span.name, SpanKind.SERVER, extractTrace(header), {
        ...info.span.attributes,
        "shop.request_id": requestId,
      })
    : untraced();
  let controller: AbortController | undefined;
  const childLogger = childWhenUsed(logger, { method: info.path, request_id: requestId });
  const ctx: CallContext = {
    method: info.path,
    deadline,
    get signal() {
      if (controller === undefined) {
        const c = new AbortController();
        controller = c;
        if (call.cancelled) c.abort();
        else call.on("cancelled", () => c.abort());
        if (extraAbort?.aborted) c.abort();
        else extraAbort?.addEventListener("abort", () => c.abort(), { once: true });
      }
      return controller.signal;
    },
    requestId,
    get logger() {
      return childLogger();
    },
    header,
    trace: context,
  };
  return { ctx, span };
}

function errorStatus(err: unknown, ctx: CallContext): Partial<grpc.StatusObject> {
  const status = toWireStatus(err);
  if (status.unexpected) {
    ctx.logger.error({ err }, "unexpected error");
  }
  const metadata = new grpc.Metadata();
  if (status.details.length > 0) {
    metadata.set("grpc-status-details-bin", Buffer.from(encodeStatusDetails(status)));
  }
  if (status.retryAfterSeconds !== undefined) {
    metadata.set("retry-after", String(status.retryAfterSeconds));
  }
  return { code: status.code as grpc.status, details: status.message, metadata };
}

/** The access line (on the service's logger: no child logger per call) and metrics. */
function logAccess(logger: Logger, ctx: CallContext, code: number, started: number) {
  const ms = performance.now() - started;
  observeGrpcServerCall(ctx.method, code, ms / 1000);
  if (logger.isLevelEnabled("info")) {
    logger.info(
      {
        method: ctx.method,
        request_id: ctx.requestId,
        code,
        duration_ms: Math.round(ms * 100) / 100,
      },
      "rpc",
    );
  }
}

/** The end of a call: its access line (and metrics), and its span. */
function finish(logger: Logger, ctx: CallContext, span: Span, code: number, started: number) {
  logAccess(logger, ctx, code, started);
  endRpcSpan(span, "server", code);
}

function wrap(
  method: DescMethod,
  handler: AnyHandler,
  logger: Logger,
  closing: AbortSignal,
): grpc.UntypedHandleCall {
  const info = methodInfo(method);
  switch (method.methodKind) {
    case "unary":
      return (call: AnyCall, callback: grpc.sendUnaryData<unknown>) => {
        const started = performance.now();
        const { ctx, span } = callContext(call, info, logger);
        runWithCall(ctx, async () => {
          try {
            const req = decode(method, call.request);
            const res = await handler(req, ctx);
            callback(null, create(method.output, res as MessageInitShape<DescMessage>));
            finish(logger, ctx, span, Code.OK, started);
          } catch (err) {
            const status = errorStatus(err, ctx);
            callback(status);
            finish(logger, ctx, span, status.code ?? Code.UNKNOWN, started);
          }
        }).catch((err: unknown) => logger.error({ err }, "unary wrapper failed"));
      };
    case "server_streaming":
    case "bidi_streaming":
      return (call: AnyCall & grpc.ServerWritableStream<Buffer, unknown>) => {
        const started = performance.now();
        const { ctx, span } = callContext(call, info, logger, closing);
        runWithCall(ctx, async () => {
          try {
            const input =
              method.methodKind === "server_streaming"
                ? decode(method, call.request)
                : decodeStream(method, call as unknown as AsyncIterable<Buffer>);
            const output = handler(input, ctx) as AsyncIterable<MessageInitShape<DescMessage>>;
            for await (const res of abortable(output, ctx.signal)) {
              if (!call.write(create(method.output, res))) {
                await Promise.race([once(call, "drain"), aborted(ctx.signal)]);
              }
            }
            call.end();
            finish(logger, ctx, span, ctx.signal.aborted ? Code.CANCELLED : Code.OK, started);
          } catch (err) {
            const status = errorStatus(err, ctx);
            if (!ctx.signal.aborted) call.emit("error", status);
            finish(logger, ctx, span, status.code ?? Code.UNKNOWN, started);
          }
        }).catch((err: unknown) => logger.error({ err }, "stream wrapper failed"));
      };
    default:
      throw new Error(
        `${method.parent.typeName}/${method.name}: ${method.methodKind} not supported`,
      );
  }
}

async function* decodeStream(method: DescMethod, source: AsyncIterable<Buffer>) {
  for await (const bytes of source) yield decode(method, bytes);
}

function aborted(signal: AbortSignal): Promise<void> {
  return signal.aborted
    ? Promise.resolve()
    : new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** Ends iteration when `signal` aborts, and closes the source so its `finally` runs. */
async function* abortable<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const stop = aborted(signal).then(() => ({ done: true as const, value: undefined }));
  try {
    while (!signal.aborted) {
      const next = await Promise.race([it.next(), stop]);
      if (next.done) return;
      yield next.value as T;
    }
  } finally {
    // Do not await: a source blocked on its own wait would hold the call open.
    void it.return?.();
  }
}
