/**
 * The edge's HTTP metrics on a real edge server: every request is counted once by
 * route, protocol and status, with bounded labels (no raw paths, no query strings).
 * The downstreams are addresses where nothing listens, so API calls fail the real way
 * (UNAVAILABLE → 503) without any other service running.
 */
import { Health } from "@shopmesh/gen/grpc/health/v1/health_pb.js";
import { createGrpcClient, createLogger, freePort, loadConfig, registry } from "@shopmesh/runtime";
import { type Exposition, parsePrometheusText } from "@shopmesh/runtime/metrics-testing.js";
import { createTestKeys, createTestVerifier } from "@shopmesh/runtime/testing.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { edgeEnv } from "../src/config.js";
import { createDownstreams, PUBLIC_SERVICES } from "../src/gateway.js";
import { createHttpClassifier } from "../src/http-metrics.js";
import { createRateLimiter } from "../src/rate-limit.js";
import { createEdgeServer, type EdgeServer } from "../src/server.js";

let edge: EdgeServer;
let base: string;

beforeAll(async () => {
  const nowhere = `127.0.0.1:${await freePort()}`;
  const config = loadConfig(edgeEnv, {
    IDENTITY_ADDR: nowhere,
    CATALOG_ADDR: nowhere,
    ORDERS_ADDR: nowhere,
    PAYMENTS_ADDR: nowhere,
    NOTIFICATIONS_ADDR: nowhere,
    EDGE_TIMEOUT_MS: "2000",
  });
  edge = createEdgeServer({
    config,
    logger: createLogger("edge-test", "silent"),
    verifier: createTestVerifier(await createTestKeys()),
    limiter: createRateLimiter(0, 1),
    downstreams: createDownstreams(config),
  });
  base = `127.0.0.1:${await edge.listen(0, "127.0.0.1")}`;
});

afterAll(async () => {
  await edge?.close();
});

const metrics = async () => parsePrometheusText(await registry.metrics());
const count = (m: Exposition, route: string, protocol: string, status: string) =>
  m.sum("shopmesh_http_server_requests_total", { route, protocol, status });

describe("edge HTTP metrics", () => {
  it("count each request by route template, protocol and status", async () => {
    const before = await metrics();
    expect((await fetch(`http://${base}/healthz`)).status).toBe(200);
    expect((await fetch(`http://${base}/v1/products?page_size=2`)).status).toBe(503);
    expect((await fetch(`http://${base}/v1/products/p-123`)).status).toBe(503);
    const connect = await fetch(`http://${base}/shop.catalog.v1.CatalogService/ListProducts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(connect.status).toBe(503);
    // Static storefront files (when web/dist is built) and unknown paths are all "other".
    const other = String((await fetch(`http://${base}/no/such/page-42?user=7`)).status);
    const health = createGrpcClient(Health, base);
    await health.check({ service: "" });
    health.close();

    const expected: [string, string, string][] = [
      ["/healthz", "http", "200"],
      ["GET /v1/products", "rest", "503"],
      ["GET /v1/products/{product_id}", "rest", "503"],
      ["/shop.catalog.v1.CatalogService/ListProducts", "connect", "503"],
      ["other", "http", other],
      ["/grpc.health.v1.Health/Check", "grpc", "200"],
    ];
    await expect
      .poll(async () => {
        const after = await metrics();
        return expected.map(([r, p, s]) => count(after, r, p, s) - count(before, r, p, s));
      })
      .toEqual(expected.map(() => 1));
    const after = await metrics();
    const routes = after.find("shopmesh_http_server_requests_total").map((s) => s.labels["route"]);
    expect(routes.some((r) => r?.includes("p-123") || r?.includes("42") || r?.includes("?"))).toBe(
      false,
    );
    expect(
      after.sum("shopmesh_http_server_request_duration_seconds_count", {
        route: "GET /v1/products",
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it("names gRPC-Web and unknown RPC paths without taking the path as a label", () => {
    const classify = createHttpClassifier(PUBLIC_SERVICES);
    const rpc = "/shop.catalog.v1.CatalogService/GetProduct";
    expect(classify("POST", rpc, "application/grpc-web+proto")).toEqual({
      route: rpc,
      protocol: "grpc-web",
    });
    expect(classify("POST", "/shop.x.v1.Made/Up", "application/grpc")).toEqual({
      route: "other",
      protocol: "http",
    });
    expect(classify("OPTIONS", "/v1/products", "")).toEqual({ route: "OPTIONS", protocol: "http" });
  });
});
