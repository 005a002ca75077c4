/**
 * The bounded labels of the edge's HTTP metrics, spans and access lines (recorded when a
 * response ends, by `traceRequest` in http-trace.ts, as
 * shopmesh_http_server_requests_total and shopmesh_http_server_request_duration_seconds).
 *
 * Labels stay bounded: a REST request is named by its route template
 * ("GET /v1/products/{product_id}"), an RPC by its method path when the method is one
 * the edge serves, the fixed pages by their path; anything else is "other".
 */
import type { DescService } from "@bufbuild/protobuf";
import { Health } from "@shopmesh/gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "@shopmesh/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "@shopmesh/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { createRestRouter } from "./rest.js";

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
