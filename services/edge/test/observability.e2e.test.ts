/**
 * Observability end to end: the real `npm start` stack exports its spans over OTLP/HTTP
 * to a real receiver in this test (otlp-receiver.ts decodes the protobuf), and one
 * PlaceOrder must come out as one trace: the edge, orders, identity, catalog, payments
 * and notifications, parent links intact across the NATS hops (consumer → publish →
 * the request that wrote the outbox row), database spans without parameter values, no
 * secret anywhere in the exported bytes, and the request's log lines carrying its
 * trace id. And every process's admin port serves valid Prometheus text whose
 * counters moved with that traffic.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Exposition, scrapeMetrics } from "@shopmesh/runtime/metrics-testing.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "./otlp-receiver.js";
import { type Stack, startStack } from "./stack-harness.js";

const SERVER = 2;
const CLIENT = 3;
const PRODUCER = 4;
const CONSUMER = 5;

let receiver: OtlpReceiver;
let stack: Stack;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  stack = await startStack({
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: "200",
      LOG_LEVEL: "info",
      LOG_FORMAT: "json",
    },
    readyTimeoutMs: 180_000,
  });
}, 200_000);

afterAll(async () => {
  await stack?.stop();
  await receiver?.close();
}, 60_000);

async function call(path: string, init: { body?: unknown; token?: string; headers?: object }) {
  const headers: Record<string, string> = {
    ...(init.headers as Record<string, string>),
    ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
    ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
  };
  const res = await fetch(`${stack.base}${path}`, {
    method: init.body !== undefined ? "POST" : "GET",
    headers,
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown>, res };
}

interface StackProcess {
  service: string;
  replica: number;
  adminPort?: number;
}

/** Every serving process's /metrics, by service (from DATA_DIR/stack.json). */
async function scrapeAll(): Promise<Map<string, Exposition>> {
  const info = JSON.parse(readFileSync(join(stack.dataDir, "stack.json"), "utf8")) as {
    services: StackProcess[];
  };
  const out = new Map<string, Exposition>();
  for (const p of info.services) {
    expect(p.adminPort, `${p.service} has an admin port`).toBeTypeOf("number");
    out.set(p.service, await scrapeMetrics(`http://127.0.0.1:${p.adminPort}/metrics`));
  }
  return out;
}

const byId = (spans: ReceivedSpan[]) => new Map(spans.map((s) => [s.spanId, s]));

/** From `span` up to the root: the chain of ancestors present in `index`. */
function ancestry(span: ReceivedSpan, index: Map<string, ReceivedSpan>): ReceivedSpan[] {
  const chain = [span];
  let at = span;
  while (at.parentSpanId !== "" && index.has(at.parentSpanId)) {
    at = index.get(at.parentSpanId) as ReceivedSpan;
    chain.push(at);
  }
  return chain;
}

describe("one PlaceOrder is one trace", () => {
  const password = `pw-${randomUUID()}`;
  let token = "";
  let traceId = "";
  let callerSpanId = "";
  let requestId = "";
  let orderId = "";
  let trace: ReceivedSpan[] = [];
  let metricsBefore = new Map<string, Exposition>();

  it("places an order with the caller's trace context and request id", async () => {
    const email = `trace-${randomUUID().slice(0, 8)}@example.com`;
    expect((await call("/v1/users", { body: { email, password, displayName: "T" } })).status).toBe(
      200,
    );
    const login = await call("/v1/auth/login", { body: { email, password } });
    token = login.json["accessToken"] as string;
    const products = await call("/v1/products?page_size=2", {});
    const items = (products.json["products"] as { id: string }[]).map((p) => ({
      productId: p.id,
      quantity: 1,
    }));

    metricsBefore = await scrapeAll();
    traceId = randomBytes(16).toString("hex");
    callerSpanId = randomBytes(8).toString("hex");
    requestId = `trace-test-${randomUUID()}`;
    const placed = await call("/v1/orders", {
      token,
      body: { items, paymentToken: "tok_visa", idempotencyKey: randomUUID() },
      headers: { traceparent: `00-${traceId}-${callerSpanId}-01`, "x-request-id": requestId },
    });
    expect(placed.status).toBe(200);
    expect(placed.res.headers.get("x-request-id")).toBe(requestId);
    orderId = String(placed.json["id"] ?? ""); // response_body: "order"
    expect(orderId).not.toBe("");
    await expect
      .poll(
        async () =>
          ((await call(`/v1/orders/${orderId}`, { token })).json["status"] as string) ?? "",
        { timeout: 30_000, interval: 250 },
      )
      .toBe("ORDER_STATUS_CONFIRMED");
  }, 60_000);

  it("exports spans of every service under the one trace id", async () => {
    const want = ["edge", "identity", "catalog", "orders", "payments", "notifications"];
    await expect
      .poll(
        () => {
          trace = receiver.spans.filter((s) => s.traceId === traceId);
          const confirmedNotified = trace.some(
            (s) =>
              s.service === "notifications" &&
              s.kind === CONSUMER &&
              s.attributes["messaging.destination.name"] === "shop.orders.order_confirmed",
          );
          return confirmedNotified ? [...new Set(trace.map((s) => s.service))].sort() : [];
        },
        { timeout: 30_000, interval: 250 },
      )
      .toEqual([...want].sort());
  }, 40_000);

  it("links every span to its parent, with the edge's span under the caller's", () => {
    const index = byId(trace);
    const orphans = trace.filter((s) => !index.has(s.parentSpanId));
    // The only span whose parent is not in the trace is the edge's, and its parent is
    // the caller's span from the traceparent header.
    expect(orphans.map((s) => [s.service, s.kind, s.parentSpanId])).toEqual([
      ["edge", SERVER, callerSpanId],
    ]);
    expect(orphans[0]?.attributes["shop.request_id"]).toBe(requestId);
    expect(orphans[0]?.attributes["http.route"]).toBe("POST /v1/orders");

    // gRPC: each server span's parent is a client span of another service.
    const placeOrder = trace.find(
      (s) => s.kind === SERVER && s.name === "shop.orders.v1.OrderService/PlaceOrder",
    );
    expect(placeOrder?.service).toBe("orders");
    const caller = index.get(placeOrder?.parentSpanId ?? "");
    expect([caller?.service, caller?.kind]).toEqual(["edge", CLIENT]);
    for (const name of [
      "shop.identity.v1.IdentityService/GetUser",
      "shop.catalog.v1.InventoryService/ReserveStock",
    ]) {
      const server = trace.find((s) => s.kind === SERVER && s.name === name);
      expect(server, name).toBeDefined();
      const client = index.get(server?.parentSpanId ?? "");
      expect([client?.service, client?.kind, client?.name]).toEqual(["orders", CLIENT, name]);
      expect(index.get(client?.parentSpanId ?? "")).toBe(placeOrder);
    }
  });

  it("crosses every NATS hop parent to child: consumer → publish → the writer's span", () => {
    const index = byId(trace);
    const consumers = trace.filter((s) => s.kind === CONSUMER);
    expect(consumers.length).toBeGreaterThanOrEqual(3);
    for (const c of consumers) {
      const publish = index.get(c.parentSpanId);
      expect(publish?.kind, c.name).toBe(PRODUCER);
      expect(publish?.attributes["messaging.destination.name"]).toBe(
        c.attributes["messaging.destination.name"],
      );
      expect(publish?.attributes["messaging.message.id"]).toBe(
        c.attributes["messaging.message.id"],
      );
    }
    // The notification of the confirmation descends, hop by hop, from the edge request.
    const notified = consumers.find(
      (s) =>
        s.service === "notifications" &&
        s.attributes["messaging.destination.name"] === "shop.orders.order_confirmed",
    ) as ReceivedSpan;
    const path = ancestry(notified, index).map((s) => `${s.service}:${s.name}`);
    expect(path).toEqual([
      "notifications:process shop.orders.order_confirmed",
      "orders:publish shop.orders.order_confirmed",
      "orders:process shop.payments.payment_succeeded",
      "payments:publish shop.payments.payment_succeeded",
      "payments:process shop.orders.order_placed",
      "orders:publish shop.orders.order_placed",
      "orders:shop.orders.v1.OrderService/PlaceOrder",
      "edge:shop.orders.v1.OrderService/PlaceOrder",
      "edge:POST /v1/orders",
    ]);
  });

  it("has database spans with the statement's shape and no parameter values", () => {
    const db = trace.filter((s) => s.attributes["db.system.name"] === "postgresql");
    const services = new Set(db.map((s) => s.service));
    for (const service of ["orders", "payments", "catalog", "notifications"]) {
      expect(services.has(service), service).toBe(true);
    }
    const insertOrder = db.find((s) => s.service === "orders" && s.name === "insert orders");
    // PlaceOrder's record: one statement of CTEs, named by its first change (ADR 0009).
    expect(insertOrder?.attributes["db.query.text"]).toMatch(
      /^with placed as \(\s*insert into "orders"/,
    );
    expect(insertOrder?.attributes["db.query.text"]).toContain("$1");
    expect(insertOrder?.kind).toBe(CLIENT);
    // A database span is a child of the span of the work it was done for.
    expect(ancestry(insertOrder as ReceivedSpan, byId(trace)).at(-1)?.service).toBe("edge");
  });

  it("never exports a password, a card token or a JWT", () => {
    const all = Buffer.concat(receiver.bodies).toString("latin1");
    expect(all.length).toBeGreaterThan(0);
    expect(all).not.toContain(password);
    expect(all).not.toContain("tok_visa");
    expect(all).not.toContain(token);
    expect(all).not.toContain(token.split(".")[2] as string);
  });

  it("writes log lines carrying the trace id in every service the order went through", () => {
    const lines = stack
      .output()
      .split("\n")
      .map((l) => l.slice(l.indexOf("{")))
      .filter((l) => l.startsWith("{") && l.includes(traceId))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const services = new Set(lines.map((l) => l["service"]));
    for (const s of ["edge", "orders", "payments", "catalog", "identity", "notifications"]) {
      expect(services.has(s), s).toBe(true);
    }
    // One access line per RPC, with the request id and the code.
    const access = lines.find(
      (l) =>
        l["service"] === "orders" &&
        l["msg"] === "rpc" &&
        l["method"] === "/shop.orders.v1.OrderService/PlaceOrder",
    );
    expect(access).toMatchObject({ request_id: requestId, code: 0, trace_id: traceId });
    expect(typeof access?.["span_id"]).toBe("string");
    const edge = lines.find((l) => l["service"] === "edge" && l["msg"] === "http");
    expect(edge).toMatchObject({ request_id: requestId, route: "POST /v1/orders", status: 200 });
  });

  it("serves valid Prometheus text on every admin port, with counters moved by the order", async () => {
    const after = await scrapeAll();
    expect([...after.keys()].sort()).toEqual([
      "catalog",
      "edge",
      "identity",
      "notifications",
      "orders",
      "payments",
    ]);
    const moved = (service: string, name: string, labels?: Record<string, string>) =>
      (after.get(service)?.sum(name, labels) ?? 0) -
      (metricsBefore.get(service)?.sum(name, labels) ?? 0);
    const ok = { code: "OK" };
    expect(moved("edge", "shopmesh_http_server_requests_total", { route: "POST /v1/orders" })).toBe(
      1,
    );
    expect(
      moved("orders", "shopmesh_grpc_server_handled_total", {
        method: "/shop.orders.v1.OrderService/PlaceOrder",
        ...ok,
      }),
    ).toBe(1);
    expect(
      moved("edge", "shopmesh_grpc_client_handled_total", {
        method: "/shop.orders.v1.OrderService/PlaceOrder",
        ...ok,
      }),
    ).toBe(1);
    expect(
      moved("identity", "shopmesh_grpc_server_handled_total", {
        method: "/shop.identity.v1.IdentityService/GetUser",
        ...ok,
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      moved("catalog", "shopmesh_grpc_server_handled_total", {
        method: "/shop.catalog.v1.InventoryService/ReserveStock",
        ...ok,
      }),
    ).toBe(1);
    // The saga's events: written to the outbox and published, then consumed.
    expect(moved("orders", "shopmesh_outbox_published_total")).toBeGreaterThanOrEqual(2);
    expect(moved("payments", "shopmesh_outbox_published_total")).toBeGreaterThanOrEqual(1);
    expect(moved("payments", "shopmesh_consumer_delivered_total")).toBeGreaterThanOrEqual(1);
    expect(moved("notifications", "shopmesh_consumer_delivered_total")).toBeGreaterThanOrEqual(1);
    for (const [service, e] of after) {
      expect(e.families.has("nodejs_eventloop_lag_seconds"), service).toBe(true);
    }
  });
});
