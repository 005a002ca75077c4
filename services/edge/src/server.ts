/**
 * The edge: one plaintext port speaking HTTP/1.1 and h2c, serving
 * - the REST paths of the `google.api.http` annotations (transcoded straight onto the
 *   grpc-js clients, without Connect's router: cheaper),
 * - Connect (JSON and binary), gRPC and gRPC-Web for the public services (connect-node),
 *   with gRPC reflection and health,
 * - /openapi.json, /docs, /healthz, /readyz, /.well-known/jwks.json.
 * Every call is admitted (token, role, rate limit) and forwarded with the caller's
 * token, the request id and a deadline.
 */
import { randomUUID } from "node:crypto";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { DescMethod } from "@bufbuild/protobuf";
import { toJson } from "@bufbuild/protobuf";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import {
  type Code,
  ConnectError,
  type ConnectRouter,
  createContextKey,
  createContextValues,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  type CallContext,
  type CallOptions,
  codeName,
  createHealth,
  createReflectionServices,
  currentCall,
  httpStatusFor,
  InvalidArgumentError,
  type Logger,
  runWithCall,
  type TokenVerifier,
  toWireStatus,
  type WireStatus,
} from "@shopmesh/runtime";
import type { EdgeConfig } from "./config.js";
import { docsHtml } from "./docs.js";
import { admit, type Downstreams, PUBLIC_SERVICES } from "./gateway.js";
import { traceRequest } from "./http-trace.js";
import { buildOpenApi } from "./openapi.js";
import type { RateLimiter } from "./rate-limit.js";
import { createReadCache } from "./read-cache.js";
import { createRestRouter, decodeRestRequest, encodeRestResponse, type RestMatch } from "./rest.js";
import { createStaticSite } from "./static.js";

export interface EdgeDeps {
  config: EdgeConfig;
  logger: Logger;
  verifier: TokenVerifier;
  limiter: RateLimiter;
  downstreams: Downstreams;
}

export interface EdgeServer {
  /** `reusePort`: several edge processes share the port (SO_REUSEPORT, Linux). */
  listen(port: number, host?: string, options?: { reusePort?: boolean }): Promise<number>;
  close(): Promise<void>;
}

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const kClientIp = createContextKey("", { description: "client ip" });
/** The request's call context (http-trace.ts), re-entered by the Connect handlers. */
const kCall = createContextKey<CallContext | undefined>(undefined, { description: "call" });

const CORS_ALLOW_HEADERS = [
  "authorization",
  "content-type",
  "connect-protocol-version",
  "connect-timeout-ms",
  "grpc-timeout",
  "x-grpc-web",
  "x-user-agent",
  "x-request-id",
  "idempotency-key",
].join(", ");
const CORS_EXPOSE_HEADERS = [
  "grpc-status",
  "grpc-message",
  "grpc-status-details-bin",
  "retry-after",
  "x-request-id",
].join(", ");

export function createEdgeServer(deps: EdgeDeps): EdgeServer {
  const { config, logger, verifier, limiter, downstreams } = deps;
  const rest = createRestRouter(PUBLIC_SERVICES);
  let openApi: string | undefined;
  const origins = config.CORS_ORIGINS.split(",").map((o) => o.trim());
  const health = createHealth(PUBLIC_SERVICES.map((s) => s.typeName));
  const reflection = createReflectionServices([...PUBLIC_SERVICES, health.registration.service]);
  const site = createStaticSite(config.WEB_DIR || undefined);
  const cacheTtlMs = config.EDGE_CACHE_TTL_MS;
  const readCache = createReadCache(cacheTtlMs);

  const callOptions = (
    authorization: string | undefined,
    requestId: string,
    timeoutMs?: number,
    signal?: AbortSignal,
  ): CallOptions => ({
    headers: {
      "x-request-id": requestId,
      ...(authorization ? { authorization } : {}),
    },
    timeoutMs: timeoutMs ?? config.EDGE_TIMEOUT_MS,
    ...(signal ? { signal } : {}),
  });

  const toConnectError = (err: unknown): ConnectError => {
    if (err instanceof ConnectError) return err;
    const status = logged(toWireStatus(err), err);
    return new ConnectError(
      status.message,
      status.code as number as Code,
      status.retryAfterSeconds === undefined
        ? undefined
        : { "retry-after": String(status.retryAfterSeconds) },
      status.details.flatMap((d) =>
        d.$typeName === ViolationsSchema.typeName
          ? [{ desc: ViolationsSchema, value: d as never }]
          : [],
      ),
    );
  };

  const logged = (status: WireStatus, err: unknown): WireStatus => {
    if (status.unexpected) logger.error({ err }, "unexpected error");
    return status;
  };

  // Admission for Connect, gRPC and gRPC-Web calls (health and reflection are open).
  const admission: Interceptor = (next) => async (req) => {
    if (!req.service.typeName.startsWith("grpc.")) {
      try {
        await admit(
          {
            method: req.method,
            authorization: req.header.get("authorization") ?? undefined,
            clientIp: req.contextValues.get(kClientIp),
          },
          verifier,
          limiter,
        );
      } catch (err) {
        throw toConnectError(err);
      }
    }
    return next(req);
  };

  const requestIdOf = (ctx: HandlerContext) =>
    ctx.requestHeader.get("x-request-id") ?? randomUUID();
  /** `fn`, called in the request's call context (its span is the parent of the call's). */
  const inCall =
    <A extends unknown[], R>(ctx: HandlerContext, fn: (...args: A) => R) =>
    (...args: A): R => {
      const call = ctx.values.get(kCall);
      return call === undefined ? fn(...args) : runWithCall(call, () => fn(...args));
    };

  const routes = (router: ConnectRouter) => {
    for (const service of PUBLIC_SERVICES) {
      const impl: Record<string, unknown> = {};
      for (const method of service.methods) {
        if (method.methodKind === "unary") {
          impl[method.localName] = async (req: unknown, ctx: HandlerContext) => {
            try {
              return await inCall(ctx, downstreams.unary(method))(
                req,
                callOptions(
                  ctx.requestHeader.get("authorization") ?? undefined,
                  requestIdOf(ctx),
                  ctx.timeoutMs(),
                  ctx.signal,
                ),
              );
            } catch (err) {
              throw toConnectError(err);
            }
          };
        } else if (method.methodKind === "server_streaming") {
          impl[method.localName] = async function* (req: unknown, ctx: HandlerContext) {
            try {
              yield* inCall(ctx, downstreams.stream(method))(
                req,
                callOptions(
                  ctx.requestHeader.get("authorization") ?? undefined,
                  requestIdOf(ctx),
                  ctx.timeoutMs(),
                  ctx.signal,
                ),
              );
            } catch (err) {
              if (ctx.signal.aborted) return;
              throw toConnectError(err);
            }
          };
        }
      }
      router.service(service, impl as never);
    }
    for (const r of [health.registration, ...reflection])
      router.service(r.service, r.impl as never);
  };

  const connectHandler = connectNodeAdapter({
    routes,
    interceptors: [admission],
    readMaxBytes: config.BODY_LIMIT_BYTES,
    contextValues: (req) =>
      createContextValues().set(kClientIp, clientIp(req)).set(kCall, currentCall()),
    fallback: (_req, res) =>
      sendJson(res as Res, 404, { code: "not_found", message: "no such route", details: [] }),
  });

  const sendError = (res: Res, err: unknown) => {
    const status = logged(toWireStatus(err), err);
    if (status.retryAfterSeconds !== undefined)
      res.setHeader("retry-after", String(status.retryAfterSeconds));
    sendJson(res, httpStatusFor(status.code), {
      code: codeName(status.code),
      message: status.message,
      details: status.details.map((d) =>
        d.$typeName === ViolationsSchema.typeName
          ? { "@type": d.$typeName, ...(toJson(ViolationsSchema, d as never) as object) }
          : { "@type": d.$typeName },
      ),
    });
  };

  const handleRest = async (req: Req, res: Res, match: RestMatch, url: URL, requestId: string) => {
    const method: DescMethod = match.route.method;
    const authorization = header(req, "authorization");
    await admit({ method, authorization, clientIp: clientIp(req) }, verifier, limiter);
    const cacheControl = header(req, "cache-control");
    if (readCache.cacheable(method, match.route.verb, { authorization, cacheControl })) {
      // A GET has no body: the path and query are the whole request, hence the key.
      const cached = await readCache.get(`${url.pathname}${url.search}`, async () => {
        const message = decodeRestRequest(match, url.searchParams, undefined);
        const out = await downstreams.unary(method)(message, callOptions(undefined, requestId));
        return JSON.stringify(encodeRestResponse(match.route, out));
      });
      res.setHeader("x-cache", cached.hit ? "hit" : "miss");
      res.setHeader("cache-control", `public, max-age=${Math.floor(cacheTtlMs / 1000)}`);
      return sendJsonText(res, 200, cached.body);
    }
    let body: unknown;
    if (match.route.body !== "") {
      const text = await readBody(req, config.BODY_LIMIT_BYTES);
      if (text.trim() !== "") {
        try {
          body = JSON.parse(text);
        } catch {
          throw new InvalidArgumentError("malformed JSON body");
        }
      }
    }
    const message = decodeRestRequest(match, url.searchParams, body) as Record<string, unknown>;
    // The Idempotency-Key header fills the request field of the same name when unset.
    const idem = header(req, "idempotency-key");
    if (idem !== undefined && "idempotencyKey" in message && message["idempotencyKey"] === "") {
      message["idempotencyKey"] = idem;
    }
    const out = await downstreams.unary(method)(message, callOptions(authorization, requestId));
    sendJson(res, 200, encodeRestResponse(match.route, out));
  };

  const handle = async (req: Req, res: Res, requestId: string) => {
    applyCors(req, res, origins);
    const url = new URL(req.url ?? "/", "http://edge");
    const verb = (req.method ?? "GET").toUpperCase();
    try {
      if (verb === "OPTIONS") {
        res.statusCode = 204;
        res.end();
        return;
      }
      if (verb === "GET" || verb === "HEAD") {
        switch (url.pathname) {
          case "/healthz":
            return sendJson(res, 200, { status: "ok" });
          case "/readyz":
            return await readiness(res);
          case "/openapi.json":
            openApi ??= JSON.stringify(
              buildOpenApi(PUBLIC_SERVICES, { title: "shopmesh", version: "v1", serverUrl: "/" }),
            );
            res.setHeader("content-type", "application/json");
            res.end(openApi);
            return;
          case "/docs":
            res.setHeader("content-type", "text/html; charset=utf-8");
            res.end(docsHtml("/openapi.json"));
            return;
          case "/.well-known/jwks.json":
            res.setHeader("cache-control", "public, max-age=300");
            return sendJson(res, 200, await verifier.jwks());
        }
        if (await site.serve(req, res, url.pathname)) return; // the storefront (web/dist)
      }
      // RPC paths name a fully qualified service: /shop.catalog.v1.CatalogService/GetProduct.
      const isRpc = RPC_PATH.test(url.pathname);
      const length = Number(header(req, "content-length") ?? 0);
      if (
        length > config.BODY_LIMIT_BYTES &&
        !/^application\/grpc/.test(header(req, "content-type") ?? "")
      ) {
        return sendJson(res, 413, {
          code: "resource_exhausted",
          message: `request body larger than ${config.BODY_LIMIT_BYTES} bytes`,
          details: [],
        });
      }
      if (!isRpc) {
        const match = rest.match(verb, url.pathname);
        if (match) return await handleRest(req, res, match, url, requestId);
        const allowed = rest.allowedVerbs(url.pathname);
        if (allowed.length > 0) {
          res.setHeader("allow", allowed.join(", "));
          return sendJson(res, 405, {
            code: "unimplemented",
            message: `${verb} not allowed here`,
            details: [],
          });
        }
      }
      connectHandler(req as never, res as never);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        return sendJson(res, 413, {
          code: "resource_exhausted",
          message: err.message,
          details: [],
        });
      }
      sendError(res, err);
    }
  };

  const readiness = async (res: Res) => {
    try {
      const jwks = await verifier.jwks();
      sendJson(res, 200, { status: "ready", keys: jwks.keys.length });
    } catch (err) {
      logger.warn({ err }, "not ready: identity keys unavailable");
      sendJson(res, 503, { status: "not ready", reason: "identity keys unavailable" });
    }
  };

  // Shutdown: the listener closes at once (new connections go to another replica);
  // HTTP/1.1 clients get "Connection: close" on their next response, HTTP/2 sessions a
  // GOAWAY, and idle sockets are closed only after a grace period, so a keep-alive
  // client is rarely caught sending on a socket the server is closing.
  let draining = false;
  const sessions = new Set<http2.ServerHttp2Session>();
  const onRequest = (req: Req, res: Res) => {
    if (draining && res instanceof http.ServerResponse) res.setHeader("connection", "close");
    // Span, request id, metrics and access line; downstream calls run in this call context.
    const call = traceRequest(req, res, logger);
    runWithCall(call, () => handle(req, res, call.requestId)).catch((err: unknown) => {
      logger.error({ err }, "edge handler failed");
      if (!res.headersSent)
        sendJson(res, 500, { code: "internal", message: "internal error", details: [] });
    });
  };

  const h1 = http.createServer({ keepAliveTimeout: 65_000 }, onRequest);
  const h2 = http2.createServer({}, onRequest);
  h2.on("sessionError", () => {});
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  const server = net.createServer((socket) => sniff(socket, h1, h2));
  server.on("error", (err) => logger.error({ err }, "edge listener error"));

  return {
    listen(port, host = "0.0.0.0", options = {}) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen({ port, host, reusePort: options.reusePort === true }, () => {
          server.off("error", reject);
          const addr = server.address();
          health.setAll(true);
          resolve(typeof addr === "object" && addr ? addr.port : port);
        });
      });
    },
    async close() {
      health.setAll(false);
      draining = true;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.close();
        setTimeout(() => h1.closeIdleConnections(), 2_000).unref();
        // Let in-flight requests finish; the shutdown bound cuts stragglers.
        setTimeout(() => {
          h1.closeAllConnections();
          resolve();
        }, 5_000).unref();
      });
      downstreams.close();
    },
  };
}

/** Reads the first bytes: the HTTP/2 preface ("PRI * HTTP/2.0") goes to h2c, the rest to HTTP/1.1. */
function sniff(socket: net.Socket, h1: http.Server, h2: http2.Http2Server) {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    if (head.length < 3 && "PRI".startsWith(head.toString("latin1"))) return;
    socket.off("data", onData);
    socket.pause();
    socket.unshift(head);
    if (head.subarray(0, 3).toString("latin1") === "PRI") {
      // The HTTP/2 session reads buffered bytes itself and then takes over the handle.
      h2.emit("connection", socket);
    } else {
      h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}

const RPC_PATH = /^\/[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+\/[A-Za-z0-9_]+$/;

class BodyTooLarge extends Error {}

function readBody(req: Req, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new BodyTooLarge(`request body larger than ${limit} bytes`));
        req.removeAllListeners("data");
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function header(req: Req, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function clientIp(req: Req): string {
  return req.socket?.remoteAddress ?? "unknown";
}

function applyCors(req: Req, res: Res, origins: string[]) {
  const origin = header(req, "origin");
  if (origin === undefined) return;
  const allowed = origins.includes("*") ? "*" : origins.includes(origin) ? origin : undefined;
  if (allowed === undefined) return;
  res.setHeader("access-control-allow-origin", allowed);
  res.setHeader("vary", "origin");
  res.setHeader("access-control-expose-headers", CORS_EXPOSE_HEADERS);
  if (req.method === "OPTIONS") {
    res.setHeader("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
    res.setHeader("access-control-allow-headers", CORS_ALLOW_HEADERS);
    res.setHeader("access-control-max-age", "600");
  }
}

function sendJson(res: Res, status: number, body: unknown) {
  sendJsonText(res, status, JSON.stringify(body));
}

function sendJsonText(res: Res, status: number, text: string) {
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.setHeader("content-length", Buffer.byteLength(text));
  res.end(text);
}
