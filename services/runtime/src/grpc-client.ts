/**
 * Typed @grpc/grpc-js clients for generated protobuf-es services.
 *
 * Every call has a deadline (the client default, or the incoming call's remaining
 * time when shorter), carries the incoming call's authorization / request id / trace
 * headers, retries UNAVAILABLE with jittered backoff where the method is idempotent,
 * and turns transport errors into a fresh RpcError.
 */

import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { MethodOptions_IdempotencyLevel as Idempotency } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { type BreakerOptions, createBreaker } from "./breaker.js";
import { currentCall, PROPAGATED_HEADERS } from "./context.js";
import { Code, decodeStatusDetails, RpcError, UnavailableError } from "./errors.js";
import { grpcDefinition } from "./grpc-server.js";
import { observeGrpcClientCall } from "./metrics.js";
import {
  endRpcSpan,
  injectTrace,
  rpcAttributes,
  type Span,
  SpanKind,
  startSpan,
} from "./tracing.js";

export interface CallOptions {
  /** Timeout for this call; the incoming call's deadline still caps it. */
  timeoutMs?: number;
  /** Extra metadata (lower-case keys). */
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

type ClientMethod<M> = M extends {
  methodKind: "unary";
  input: infer I extends DescMessage;
  output: infer O extends DescMessage;
}
  ? (req: MessageInitShape<I>, options?: CallOptions) => Promise<MessageShape<O>>
  : M extends {
        methodKind: "server_streaming";
        input: infer I extends DescMessage;
        output: infer O extends DescMessage;
      }
    ? (req: MessageInitShape<I>, options?: CallOptions) => AsyncIterable<MessageShape<O>>
    : M extends {
          methodKind: "bidi_streaming";
          input: infer I extends DescMessage;
          output: infer O extends DescMessage;
        }
      ? (
          reqs: Iterable<MessageInitShape<I>>,
          options?: CallOptions,
        ) => AsyncIterable<MessageShape<O>>
      : never;

/** A typed client: one async method per RPC, named by the method's local name. */
export type Client<S> =
  S extends GenService<infer M extends GenServiceMethods>
    ? { [K in keyof M]: ClientMethod<M[K]> } & { close(): void }
    : never;

export interface ClientOptions {
  /** Default timeout of every call. Default 5 s. */
  timeoutMs?: number;
  /**
   * Attempts for idempotent calls failing with UNAVAILABLE. Default 5: with the jittered
   * backoff that spans a few hundred ms, enough for a replica's GOAWAY to reach the
   * balancer so the next attempt goes to another replica.
   */
  maxAttempts?: number;
  /** First backoff step; doubled each attempt, with full jitter. Default 50 ms. */
  backoffMs?: number;
  channelOptions?: grpc.ChannelOptions;
  /** Circuit breaker of this downstream; `false` turns it off. */
  breaker?: BreakerOptions | false;
}

/**
 * A client for `service` at `address` ("host:port", or any grpc-js target such as
 * "dns:///svc.ns:50051" or "ipv4:10.0.0.1:50051,10.0.0.2:50051"), balanced round robin.
 */
export function createGrpcClient<S extends GenService<GenServiceMethods>>(
  service: S,
  address: string,
  options: ClientOptions = {},
): Client<S> {
  const desc = service as unknown as DescService;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const maxAttempts = options.maxAttempts ?? 5;
  const backoffMs = options.backoffMs ?? 50;
  const raw = new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
    "grpc.keepalive_time_ms": 30_000,
    // A replica that restarts (rolling update) is back in rotation within ~2 s, not
    // grpc-js's default of up to 120 s of reconnect backoff.
    "grpc.initial_reconnect_backoff_ms": 250,
    "grpc.max_reconnect_backoff_ms": 2_000,
    ...options.channelOptions,
  });
  const def = grpcDefinition(desc);
  const breaker =
    options.breaker === false
      ? undefined
      : createBreaker(`${desc.typeName}@${address}`, options.breaker);
  const client: Record<string, unknown> = { close: () => raw.close() };

  for (const method of desc.methods) {
    const d = def[method.localName];
    if (d === undefined) continue;
    const path = d.path;
    const serialize = d.requestSerialize;
    const deserialize = d.responseDeserialize as (b: Buffer) => MessageShape<DescMessage>;
    const retryable =
      method.idempotency === Idempotency.NO_SIDE_EFFECTS ||
      method.idempotency === Idempotency.IDEMPOTENT;

    switch (method.methodKind) {
      case "unary":
        client[method.localName] = async (req: MessageInitShape<DescMessage>, o?: CallOptions) => {
          const msg = create(method.input, req);
          const { deadline, metadata, span, started } = callSetup(path, timeoutMs, o);
          const done = (code: number) => endCall(path, span, started, code);
          for (let attempt = 1; ; attempt++) {
            let ticket = 0;
            try {
              ticket = breaker?.before() ?? 0;
              const res = await new Promise((resolve, reject) => {
                const call = raw.makeUnaryRequest(
                  path,
                  serialize,
                  deserialize,
                  msg,
                  metadata,
                  { deadline },
                  (err, res) => (err ? reject(err) : resolve(res)),
                );
                onAbort(o?.signal, () => call.cancel());
              });
              breaker?.after(Code.OK, ticket);
              done(Code.OK);
              return res;
            } catch (err) {
              if (err instanceof UnavailableError) {
                done(Code.UNAVAILABLE);
                throw err; // the circuit is open
              }
              const e = toRpcError(err, path);
              breaker?.after(e.code, ticket);
              const left = deadline.getTime() - Date.now();
              const wait = Math.random() * backoffMs * 2 ** (attempt - 1);
              if (
                !retryable ||
                e.code !== Code.UNAVAILABLE ||
                attempt >= maxAttempts ||
                wait >= left
              ) {
                done(e.code);
                throw e;
              }
              span.addEvent("retry", { "rpc.grpc.status_code": e.code, attempt });
              await new Promise((r) => setTimeout(r, wait));
            }
          }
        };
        break;
      case "server_streaming":
      case "bidi_streaming":
        client[method.localName] = (
          req: MessageInitShape<DescMessage> | Iterable<MessageInitShape<DescMessage>>,
          o?: CallOptions,
        ) => streamCall(raw, method, path, serialize, deserialize, req, o);
        break;
      default:
        break;
    }
  }
  return client as Client<S>;
}

async function* streamCall(
  raw: grpc.Client,
  method: DescMethod,
  path: string,
  serialize: (m: MessageShape<DescMessage>) => Buffer,
  deserialize: (b: Buffer) => MessageShape<DescMessage>,
  req: MessageInitShape<DescMessage> | Iterable<MessageInitShape<DescMessage>>,
  o: CallOptions | undefined,
): AsyncGenerator<MessageShape<DescMessage>> {
  // Streams are long-lived: only an explicit timeout or an incoming deadline bounds them.
  const { metadata, deadline, span, started } = callSetup(
    path,
    o?.timeoutMs ?? Number.POSITIVE_INFINITY,
    o,
  );
  const callOptions = Number.isFinite(deadline.getTime()) ? { deadline } : {};
  let call: grpc.ClientReadableStream<MessageShape<DescMessage>>;
  if (method.methodKind === "server_streaming") {
    call = raw.makeServerStreamRequest(
      path,
      serialize,
      deserialize,
      create(method.input, req as MessageInitShape<DescMessage>),
      metadata,
      callOptions,
    );
  } else {
    const duplex = raw.makeBidiStreamRequest(path, serialize, deserialize, metadata, callOptions);
    for (const r of req as Iterable<MessageInitShape<DescMessage>>) {
      duplex.write(create(method.input, r));
    }
    duplex.end();
    call = duplex;
  }
  onAbort(o?.signal, () => call.cancel());
  let code: number = Code.CANCELLED; // unless the stream ends or fails first
  try {
    for await (const msg of call) yield msg as MessageShape<DescMessage>;
    code = Code.OK;
  } catch (err) {
    const e = toRpcError(err, path);
    code = e.code;
    throw e;
  } finally {
    endCall(path, span, started, code);
    // The consumer stopped early (break / return): cancel the call on the server too.
    call.cancel();
  }
}

/** Deadline, metadata and the client span of one outgoing call. */
function callSetup(path: string, timeoutMs: number, o: CallOptions | undefined) {
  const incoming = currentCall();
  let deadlineMs = Date.now() + (o?.timeoutMs ?? timeoutMs);
  if (incoming?.deadline !== undefined) {
    deadlineMs = Math.min(deadlineMs, incoming.deadline.getTime());
  }
  const metadata = new grpc.Metadata();
  if (incoming !== undefined) {
    for (const key of PROPAGATED_HEADERS) {
      const v = key === "x-request-id" ? incoming.requestId : incoming.header(key);
      if (v !== undefined) metadata.set(key, v);
    }
  }
  for (const [k, v] of Object.entries(o?.headers ?? {})) metadata.set(k, v);
  const rpc = rpcAttributes(path);
  const { span, context } = startSpan(rpc.name, SpanKind.CLIENT, incoming?.trace, rpc.attributes);
  injectTrace(context, (k, v) => metadata.set(k, v));
  return { deadline: new Date(deadlineMs), metadata, span, started: performance.now() };
}

/** The end of an outgoing call (retries included): its span and its metrics. */
function endCall(path: string, span: Span, started: number, code: number) {
  endRpcSpan(span, "client", code);
  observeGrpcClientCall(path, code, started);
}

function onAbort(signal: AbortSignal | undefined, fn: () => void) {
  if (signal === undefined) return;
  if (signal.aborted) fn();
  else signal.addEventListener("abort", fn, { once: true });
}

function toRpcError(err: unknown, path: string): RpcError {
  const e = err as Partial<grpc.ServiceError>;
  const code = (typeof e.code === "number" ? e.code : Code.UNKNOWN) as Code;
  const bin = e.metadata?.get("grpc-status-details-bin")[0];
  let details: ReturnType<typeof decodeStatusDetails> = [];
  if (bin instanceof Buffer) {
    try {
      details = decodeStatusDetails(bin);
    } catch {
      details = [];
    }
  }
  const retryAfter = Number(e.metadata?.get("retry-after")[0] ?? Number.NaN);
  return new RpcError(
    code,
    e.details ?? e.message ?? "unknown error",
    path,
    details,
    Number.isFinite(retryAfter) ? retryAfter : undefined,
  );
}
