/**
 * The edge's side of tracing and access logging: `traceRequest(req, res, logger)` at
 * the start of a request
 * - takes the caller's `x-request-id` (when it is a sane token) or makes one, and
 *   echoes it on the response;
 * - starts the SERVER span of the request, child of the caller's `traceparent` when it
 *   sends one (a browser, a client's own tracing), named by its route once known;
 * - returns the CallContext every downstream call of the request runs in, so their
 *   client spans are children of this span and carry its request id;
 * - when the response ends (sent, or its connection gone): counts it in the HTTP
 *   metrics and writes one access line (method, route, protocol, status, duration), at
 *   debug level for probes; the request is classified once for all three.
 */
import { randomUUID } from "node:crypto";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import {
  type CallContext,
  endSpan,
  extractTrace,
  type Logger,
  observeHttpRequest,
  SpanKind,
  startSpan,
  untraced,
} from "@shopmesh/runtime";
import { PUBLIC_SERVICES } from "./gateway.js";
import { createHttpClassifier } from "./http-metrics.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Request ids we pass on as they are; anything else is replaced (log and header safety). */
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;
/** Kubernetes and load-balancer probes: not traced, logged at debug. */
const PROBES = new Set(["/healthz", "/readyz"]);

const classify = createHttpClassifier(PUBLIC_SERVICES);

function header(req: Req, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function traceRequest(req: Req, res: Res, logger: Logger): CallContext {
  const started = performance.now();
  const given = header(req, "x-request-id");
  const requestId = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
  req.headers["x-request-id"] = requestId;
  res.setHeader("x-request-id", requestId);
  const verb = (req.method ?? "GET").toUpperCase();
  const rawUrl = req.url ?? "/";
  const q = rawUrl.indexOf("?");
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const probe = PROBES.has(path);
  const { span, context } = probe
    ? untraced()
    : startSpan(
        verb,
        SpanKind.SERVER,
        extractTrace((k) => header(req, k)),
        {
          "http.request.method": verb,
          "url.path": path,
          "network.protocol.version": req.httpVersion,
          "shop.request_id": requestId,
        },
      );
  // The abort signal and the child logger are made on first use (most requests use
  // neither); the access line goes on the edge's logger with the request id inline.
  let controller: AbortController | undefined;
  let gone = false;
  let child: Logger | undefined;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    const { route, protocol } = classify(verb, rawUrl, header(req, "content-type") ?? "");
    // 499 (as nginx logs it): the client went away before the response was sent.
    const status = res.writableFinished ? res.statusCode : 499;
    if (status === 499) {
      gone = true;
      controller?.abort();
    }
    const elapsedMs = performance.now() - started;
    observeHttpRequest(route, protocol, status, elapsedMs / 1000);
    const durationMs = Math.round(elapsedMs * 100) / 100;
    if (span.isRecording()) {
      // REST routes name their verb already ("GET /v1/products/{product_id}").
      span.updateName(
        route.startsWith("/") ? `${verb} ${route}` : route === "other" ? verb : route,
      );
      span.setAttributes({
        "http.route": route,
        "http.response.status_code": status,
        "shop.protocol": protocol,
      });
    }
    endSpan(span, status >= 500);
    const line = {
      request_id: requestId,
      method: verb,
      route,
      protocol,
      status,
      duration_ms: durationMs,
    };
    if (probe) logger.debug(line, "http");
    else logger.info(line, "http");
  };
  res.once("finish", finish);
  res.once("close", finish);
  const ctx: CallContext = {
    method: `${verb} ${path}`,
    deadline: undefined,
    get signal() {
      if (controller === undefined) {
        controller = new AbortController();
        if (gone) controller.abort();
      }
      return controller.signal;
    },
    requestId,
    get logger() {
      child ??= logger.child({ request_id: requestId });
      return child;
    },
    header: (name) => header(req, name),
    trace: context,
  };
  return ctx;
}
