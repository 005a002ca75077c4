/**
 * Metrics end to end on real servers: the admin server (/metrics, /healthz, /readyz),
 * RPC counters after calls through createGrpcServer, outbox and consumer metrics after
 * traffic on the real nats-server, and the pool gauges on the real PostgreSQL. Also
 * the strict exposition parser the e2e tests use.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { AckPolicy } from "@nats-io/jetstream";
import { Health } from "@shopmesh/gen/grpc/health/v1/health_pb.js";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminServer, adminEnv, startAdminServer, whenServing } from "../src/admin-server.js";
import {
  type Bus,
  connectBus,
  PermanentEventError,
  startConsumer,
  startOutboxRelay,
} from "../src/bus.js";
import { loadConfig } from "../src/config.js";
import { type Database, openDatabase } from "../src/db.js";
import { Code } from "../src/errors.js";
import { countOf, createFastHistogram } from "../src/fast-histogram.js";
import { createGrpcClient } from "../src/grpc-client.js";
import { createLogger } from "../src/logger.js";
import { createConsumerMetrics, observeGrpcClientCall, registry } from "../src/metrics.js";
import { type Exposition, parsePrometheusText, scrapeMetrics } from "../src/metrics-testing.js";
import { enqueueEvent } from "../src/outbox.js";
import { createTestDatabase, rpcError, startTestServer } from "../src/testing.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const logger = createLogger("metrics-test", "silent");
const migrationsFolder = fileURLToPath(new URL("./fixtures/migrations", import.meta.url));
const topic = `shop.m${randomBytes(4).toString("hex")}`;

let admin: AdminServer;
let metricsUrl: string;
let database: Database<Record<string, never>>;
let drop: () => Promise<void>;
let dbUrl: string;
let bus: Bus;

beforeAll(async () => {
  admin = await startAdminServer({ port: 0, host: "127.0.0.1", service: "metrics-test", logger });
  metricsUrl = `http://127.0.0.1:${admin.port}/metrics`;
  const t = await createTestDatabase("metrics");
  drop = t.drop;
  dbUrl = t.url;
  database = await openDatabase({ url: t.url, schema: {}, migrationsFolder });
  bus = await connectBus({ url: NATS_URL, name: "metrics-test", logger });
});

afterAll(async () => {
  await admin?.close();
  await bus?.close();
  await database?.close();
  await drop?.();
});

const scrape = () => scrapeMetrics(metricsUrl);

describe("admin server", () => {
  it("serves valid Prometheus text with process metrics labelled by service", async () => {
    const m = await scrape();
    expect(m.families.get("nodejs_eventloop_lag_seconds")?.type).toBe("gauge");
    expect(m.families.get("process_cpu_user_seconds_total")?.type).toBe("counter");
    expect(m.families.get("shopmesh_grpc_server_handling_seconds")?.type).toBe("histogram");
    expect(m.find("nodejs_eventloop_lag_seconds")[0]?.labels["service"]).toBe("metrics-test");
  });

  it("answers /healthz, 404 elsewhere and 405 for other verbs", async () => {
    const base = `http://127.0.0.1:${admin.port}`;
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("ok\n");
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    const post = await fetch(`${base}/metrics`, { method: "POST", body: "x" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  it("is not ready while starting, ready when SERVING, and 503 once shutdown starts", async () => {
    const own = await startAdminServer({
      port: 0,
      host: "127.0.0.1",
      service: "metrics-test",
      logger,
    });
    const readyz = async () => {
      const res = await fetch(`http://127.0.0.1:${own.port}/readyz`);
      return `${res.status} ${(await res.text()).trim()}`;
    };
    expect(await readyz()).toBe("503 starting");
    const { server } = await startTestServer([], logger);
    own.readyWhen(whenServing(server.health));
    expect(await readyz()).toBe("200 ready");
    const shutdown = server.shutdown();
    // Health flips at the first moment of shutdown, before in-flight calls drain.
    expect(await readyz()).toBe("503 not ready");
    await shutdown;
    own.readyWhen(async () => false);
    expect(await readyz()).toBe("503 not ready");
    own.readyWhen(() => {
      throw new Error("keys unavailable");
    });
    expect(await readyz()).toBe("503 not ready");
    own.readyWhen(async () => true);
    expect(await readyz()).toBe("200 ready");
    own.drain();
    expect(await readyz()).toBe("503 draining");
    await own.close();
    await expect(fetch(`http://127.0.0.1:${own.port}/healthz`)).rejects.toThrow();
  });

  it("reads ADMIN_PORT: unset or empty means no server, a bad value names the variable", async () => {
    expect(loadConfig(adminEnv, {}).ADMIN_PORT).toBeUndefined();
    expect(loadConfig(adminEnv, { ADMIN_PORT: "" }).ADMIN_PORT).toBeUndefined();
    expect(loadConfig(adminEnv, { ADMIN_PORT: "9090" }).ADMIN_PORT).toBe(9090);
    expect(() => loadConfig(adminEnv, { ADMIN_PORT: "http" })).toThrow(
      'ADMIN_PORT must be an integer (got "http")',
    );
    expect(() => loadConfig(adminEnv, { ADMIN_PORT: "70000" })).toThrow(
      "ADMIN_PORT must be <= 65535",
    );
    const none = await startAdminServer({ port: undefined, service: "metrics-test", logger });
    expect(none.port).toBeUndefined();
    await none.close();
  });
});

describe("gRPC server metrics", () => {
  it("count calls by method and code, with a duration histogram", async () => {
    const { server, address } = await startTestServer([], logger);
    const client = createGrpcClient(Health, address);
    const check = "/grpc.health.v1.Health/Check";
    const before = await scrape();
    for (let i = 0; i < 3; i++) await client.check({ service: "" });
    await rpcError(client.check({ service: "no.such.Service" }));
    const after = await scrape();
    const delta = (m: Exposition, name: string, code: string) =>
      m.sum(name, { method: check, code });
    expect(
      delta(after, "shopmesh_grpc_server_handled_total", "OK") -
        delta(before, "shopmesh_grpc_server_handled_total", "OK"),
    ).toBe(3);
    expect(
      delta(after, "shopmesh_grpc_server_handled_total", "NOT_FOUND") -
        delta(before, "shopmesh_grpc_server_handled_total", "NOT_FOUND"),
    ).toBe(1);
    expect(
      delta(after, "shopmesh_grpc_server_handling_seconds_count", "OK") -
        delta(before, "shopmesh_grpc_server_handling_seconds_count", "OK"),
    ).toBe(3);
    expect(
      after.sum("shopmesh_grpc_server_handling_seconds_sum", { method: check }),
    ).toBeGreaterThan(0);
    client.close();
    await server.shutdown();
  });
});

describe("gRPC client metrics", () => {
  it("count calls by method and status name", async () => {
    const method = "/shop.test.v1.Made/Up";
    observeGrpcClientCall(method, Code.UNAVAILABLE, performance.now());
    observeGrpcClientCall(method, 42, performance.now());
    const m = await scrape();
    expect(m.sum("shopmesh_grpc_client_handled_total", { method, code: "UNAVAILABLE" })).toBe(1);
    expect(m.sum("shopmesh_grpc_client_handling_seconds_count", { method, code: "UNKNOWN" })).toBe(
      1,
    );
  });
});

describe("bus metrics", () => {
  it("outbox: backlog while NATS refuses the subject, failures, then published with a lag sample per row", async () => {
    const before = await scrape();
    // No stream takes "nostream.>": the publish fails and the rows stay in the outbox.
    await database.db.transaction(async (tx) => {
      for (let i = 0; i < 4; i++) {
        await enqueueEvent(tx, `nostream.${topic}`, UserRegisteredSchema, { userId: `u${i}` });
      }
    });
    const relay = startOutboxRelay({ sql: database.sql, bus, logger, pollMs: 100 });
    await expect
      .poll(async () => (await scrape()).sum("shopmesh_outbox_publish_failures_total"), {
        timeout: 15_000,
      })
      .toBeGreaterThan(before.sum("shopmesh_outbox_publish_failures_total"));
    expect((await scrape()).sum("shopmesh_outbox_backlog")).toBe(4);

    await database.db.execute(sql`update outbox set subject = ${`${topic}.user_registered`}`);
    relay.kick();
    await expect
      .poll(async () => (await scrape()).sum("shopmesh_outbox_backlog"), { timeout: 15_000 })
      .toBe(0);
    const after = await scrape();
    expect(
      after.sum("shopmesh_outbox_published_total") - before.sum("shopmesh_outbox_published_total"),
    ).toBe(4);
    expect(
      after.sum("shopmesh_outbox_publish_lag_seconds_count") -
        before.sum("shopmesh_outbox_publish_lag_seconds_count"),
    ).toBe(4);
    // The rows waited for the failures above: their lag is real, not zero.
    expect(
      after.sum("shopmesh_outbox_publish_lag_seconds_sum") -
        before.sum("shopmesh_outbox_publish_lag_seconds_sum"),
    ).toBeGreaterThan(0);
    await relay.stop();
  });

  it("consumer: delivered, redelivered, dead-lettered and handling time by outcome", async () => {
    const durable = `m-${randomBytes(3).toString("hex")}`;
    const subject = `${topic}.consumer`;
    let calls = 0;
    const consumer = await startConsumer({
      bus,
      durable,
      subject,
      logger,
      backoffMs: [50],
      handler: async (m) => {
        calls++;
        const body = new TextDecoder().decode(m.data);
        if (body === "permanent") throw new PermanentEventError("never");
        if (body === "flaky" && m.deliveryCount === 1) throw new Error("once");
      },
    });
    for (const body of ["ok", "flaky", "permanent"]) {
      await bus.js.publish(subject, new TextEncoder().encode(body), {
        msgID: `${durable}-${body}`,
      });
    }
    const labels = { consumer: durable };
    await expect
      .poll(async () => (await scrape()).sum("shopmesh_consumer_handling_seconds_count", labels), {
        timeout: 15_000,
      })
      .toBe(4);
    const m = await scrape();
    expect(calls).toBe(4);
    expect(m.sum("shopmesh_consumer_delivered_total", labels)).toBe(4);
    expect(m.sum("shopmesh_consumer_redelivered_total", labels)).toBe(1);
    expect(m.sum("shopmesh_consumer_dead_lettered_total", labels)).toBe(1);
    const outcome = (o: string) =>
      m.sum("shopmesh_consumer_handling_seconds_count", { ...labels, outcome: o });
    expect([outcome("ack"), outcome("retry"), outcome("dead_letter")]).toEqual([2, 1, 1]);
    await consumer.stop();
    // A stopped consumer's gauges go away.
    expect((await scrape()).find("shopmesh_consumer_pending", labels)).toHaveLength(0);
    await bus.jsm.consumers.delete("SHOP", durable);
  });

  it("consumer pending: num_pending of the durable, sampled from JetStream", async () => {
    const durable = `p-${randomBytes(3).toString("hex")}`;
    const subject = `${topic}.pending`;
    // A durable nobody pulls from: everything published stays pending.
    await bus.jsm.consumers.add("SHOP", {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      filter_subject: subject,
    });
    for (let i = 0; i < 5; i++) await bus.js.publish(subject, new Uint8Array([i]));
    const metrics = createConsumerMetrics(
      durable,
      () => bus.jsm.consumers.info("SHOP", durable),
      50,
    );
    await expect
      .poll(async () => (await scrape()).sum("shopmesh_consumer_pending", { consumer: durable }), {
        timeout: 10_000,
      })
      .toBe(5);
    expect((await scrape()).sum("shopmesh_consumer_ack_pending", { consumer: durable })).toBe(0);
    metrics.stop();
    await bus.jsm.consumers.delete("SHOP", durable);
  });
});

describe("database pool metrics", () => {
  it("report the pool's size and its connections by state from pg_stat_activity", async () => {
    // Three queries at once make the pool open three connections.
    await Promise.all([1, 2, 3].map(() => database.sql`select pg_sleep(0.05)`));
    const m = await scrape();
    expect(m.sum("shopmesh_db_pool_max")).toBe(10);
    expect(m.sum("shopmesh_db_pool_connections", { state: "idle" })).toBeGreaterThanOrEqual(3);
  });

  it("still answer when every connection of a pool is busy", async () => {
    const small = await openDatabase({ url: dbUrl, schema: {}, max: 2 });
    const lock = 0x6d_65_74;
    // Advisory locks are per database: the holder is a connection of its own to it.
    const holder = postgres(dbUrl, { max: 1, onnotice: () => {} });
    try {
      await holder`select pg_advisory_lock(${lock})`;
      // Both connections of the small pool wait for the lock: the pool is saturated.
      const waiting = [1, 2].map(
        // postgres.js queries are lazy: execute() sends it now.
        () => small.sql`select pg_advisory_lock(${lock}), pg_advisory_unlock(${lock})`.execute(),
      );
      await expect
        .poll(
          async () => (await scrape()).sum("shopmesh_db_pool_connections", { state: "active" }),
          {
            timeout: 10_000,
          },
        )
        .toBeGreaterThanOrEqual(2);
      expect((await scrape()).sum("shopmesh_db_pool_max")).toBe(12);
      await holder`select pg_advisory_unlock(${lock})`;
      await Promise.all(waiting);
    } finally {
      await holder.end();
      await small.close();
    }
    expect((await scrape()).sum("shopmesh_db_pool_max")).toBe(10);
  });
});

describe("fast histogram", () => {
  it("buckets by le (inclusive), cumulative, with sum, count and its counter", async () => {
    const own = new Registry();
    const h = createFastHistogram(own, {
      name: "t_seconds",
      help: "test",
      labelNames: ["k"],
      buckets: [0.1, 1],
    });
    countOf(own, h, { name: "t_total", help: "test" });
    const a = h.series("a");
    for (const v of [0.05, 0.1, 0.5, 1, 7]) a.observe(v);
    expect(h.series("a")).toBe(a);
    h.series("b");
    const m = parsePrometheusText(await own.metrics());
    const bucket = (le: string) => m.sum("t_seconds_bucket", { k: "a", le });
    expect([bucket("0.1"), bucket("1"), bucket("+Inf")]).toEqual([2, 4, 5]);
    expect(m.sum("t_seconds_sum", { k: "a" })).toBeCloseTo(8.65);
    expect(m.sum("t_seconds_count", { k: "a" })).toBe(5);
    expect(m.sum("t_total", { k: "a" })).toBe(5);
    expect(m.find("t_total", { k: "b" })[0]?.value).toBe(0);
    expect(m.families.get("t_total")?.type).toBe("counter");
  });
});

describe("parsePrometheusText", () => {
  it("accepts the registry's own output", async () => {
    const m = parsePrometheusText(await registry.metrics());
    expect(m.families.size).toBeGreaterThan(20);
  });

  it.each([
    ["no final newline", "a 1"],
    ["bad metric name", "1a 1\n"],
    ["bad value", "a one\n"],
    ["bad label", 'a{1x="v"} 1\n'],
    ["unterminated label value", 'a{x="v} 1\n'],
    ["bad escape", 'a{x="\\t"} 1\n'],
    ["duplicate series", 'a{x="1"} 1\na{x="1"} 2\n'],
    ["label twice", 'a{x="1",x="2"} 1\n'],
    ["TYPE after samples", "a 1\n# TYPE a gauge\n"],
    ["bad type", "# TYPE a thing\n"],
    ["not contiguous", 'a 1\nb 1\na{x="1"} 1\n'],
    ["negative counter", "# TYPE a counter\na -1\n"],
    ["histogram without +Inf", '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    [
      "histogram not cumulative",
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    ],
    ["+Inf bucket != count", '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'],
  ])("rejects %s", (_, text) => {
    expect(() => parsePrometheusText(text)).toThrow();
  });

  it("reads labels with escapes, special values and timestamps", () => {
    const m = parsePrometheusText(
      '# HELP a help text\n# TYPE a gauge\na{x="q\\"uote\\\\n\\n"} +Inf 1700000000000\na{x="y"} NaN\n',
    );
    expect(m.find("a")[0]?.labels["x"]).toBe('q"uote\\n\n');
    expect(m.sum("a", { x: 'q"uote\\n\n' })).toBe(Number.POSITIVE_INFINITY);
    expect(m.families.get("a")?.help).toBe("help text");
  });
});
