/**
 * The edge's HTTP metrics: `observeHttp(req, res)` at the start of a request records,
 * when its response ends, the route, the protocol and the HTTP status
 * (shopmesh_http_server_requests_total and shopmesh_http_server_request_duration_seconds).
 *
 * A response cut off before it was sent counts as status 499.
 * Labels stay bounded: a REST request is named by its route template
 * ("GET /v1/products/{product_id}"), an RPC by its method path when the method is one
 * the edge serves, the fixed pages by their path; anything else is "other".
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { Health } from "@shopmesh/gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "@shopmesh/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "@shopmesh/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { observeHttpRequest } from "@shopmesh/runtime";
import { PUBLIC_SERVICES } from "./gateway.js";
import { createRestRouter } from "./rest.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const FIXED_PATHS = new Set([
  "/healthz",
  "/readyz",
  "/openapi.json",
  "/docs",
  "/.well-known/jwks.json",
]);

/** Classifies a request into bounded (route, protocol) labels. */
export function createHttpClassifier(services: DescService[]) {
  const rest = createRestRouter(services);
  const rpcs = new Set<string>();
  for (const s of [...services, Health, ReflectionV1, ReflectionV1alpha]) {
    for (const m of s.methods) rpcs.add(`/${s.typeName}/${m.name}`);
  }
  return (
    verb: string,
    rawUrl: string,
    contentType: string,
  ): { route: string; protocol: string } => {
    const q = rawUrl.indexOf("?");
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
    if (rpcs.has(path)) {
      const protocol = contentType.startsWith("application/grpc-web")
        ? "grpc-web"
        : contentType.startsWith("application/grpc")
          ? "grpc"
          : "connect";
      return { route: path, protocol };
    }
    if (verb === "OPTIONS") return { route: "OPTIONS", protocol: "http" };
    const match = rest.match(verb, path);
    if (match) return { route: `${match.route.verb} ${match.route.template}`, protocol: "rest" };
    if (FIXED_PATHS.has(path)) return { route: path, protocol: "http" };
    return { route: "other", protocol: "http" };
  };
}

const classify = createHttpClassifier(PUBLIC_SERVICES);

/** Records `req` when `res` is done (sent, or its connection gone). */
export function observeHttp(req: Req, res: Res): void {
  const started = performance.now();
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    const verb = (req.method ?? "GET").toUpperCase();
    const { route, protocol } = classify(
      verb,
      req.url ?? "/",
      String(req.headers["content-type"] ?? ""),
    );
    // 499 (as nginx logs it): the client went away before the response was sent.
    const status = res.writableFinished ? res.statusCode : 499;
    observeHttpRequest(route, protocol, status, (performance.now() - started) / 1000);
  };
  res.once("finish", finish);
  res.once("close", finish);
}
