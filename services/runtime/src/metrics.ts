/**
 * The Prometheus metrics of a shopmesh process: one registry (served on the admin
 * port by admin-server.ts) and the recording functions the runtime's hot paths call.
 *
 * Labels are bounded: method paths of registered services, status codes, durable
 * consumer names, route templates. Never user ids, raw paths or event ids.
 * Recording is cheap on the hot paths (every RPC, every HTTP request, every outbox
 * row): fast-histogram.ts series bound once per label set, looked up per (method,
 * code) in an array, so an observation allocates nothing.
 */

import postgres from "postgres";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { Code } from "./errors.js";
import { countOf, createFastHistogram, type Series } from "./fast-histogram.js";

/** Every metric of this process. `initMetrics` adds the process metrics and the service label. */
export const registry = new Registry();

/** Seconds; from a fast cache hit to a slow saga step. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds an outbox row waits before it is on the bus. */
const LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

let initialised: string | undefined;

/**
 * Labels every series with `service` and starts prom-client's process metrics
 * (CPU, memory, GC, handles, event-loop lag). Once per process; a second call with
 * another name throws (one process is one service).
 */
export function initMetrics(service: string): void {
  if (initialised === service) return;
  if (initialised !== undefined) {
    throw new Error(`metrics already initialised for "${initialised}", not "${service}"`);
  }
  initialised = service;
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
}

// ---------------------------------------------------------------- gRPC server and client

const CODE_NAMES: string[] = [];
for (const [name, value] of Object.entries(Code)) CODE_NAMES[value] = name;
const codeLabel = (code: number) => CODE_NAMES[code] ?? "UNKNOWN";

/**
 * `shopmesh_grpc_<side>_handled_total` and `_handling_seconds` by (method, code), from
 * one observation; series cached per method in an array indexed by code.
 */
function rpcMetrics(side: "server" | "client", help: { count: string; seconds: string }) {
  const seconds = createFastHistogram(registry, {
    name: `shopmesh_grpc_${side}_handling_seconds`,
    help: help.seconds,
    labelNames: ["method", "code"],
    buckets: LATENCY_BUCKETS,
  });
  countOf(registry, seconds, { name: `shopmesh_grpc_${side}_handled_total`, help: help.count });
  const byMethod = new Map<string, Series[]>();
  return (method: string, code: number, s: number) => {
    let byCode = byMethod.get(method);
    if (byCode === undefined) {
      byCode = [];
      byMethod.set(method, byCode);
    }
    let series = byCode[code];
    if (series === undefined) {
      series = seconds.series(method, codeLabel(code));
      byCode[code] = series;
    }
    series.observe(s);
  };
}

const serverCalls = rpcMetrics("server", {
  count: "gRPC calls completed by the server, by method and status code.",
  seconds: "Time from a gRPC call's arrival to its status, by method and status code.",
});
const clientCalls = rpcMetrics("client", {
  count:
    "gRPC calls made by this process's clients, by method and final status (retries included).",
  seconds: "Time from a client call's start to its final status, retries included.",
});

/** Records one finished server call; `method` is the path `/pkg.Service/Method`. */
export function observeGrpcServerCall(method: string, code: number, seconds: number): void {
  serverCalls(method, code, seconds);
}

/** Records one finished client call to `method`; `started` is its performance.now(). */
export function observeGrpcClientCall(method: string, code: number, started: number): void {
  clientCalls(method, code, (performance.now() - started) / 1000);
}

// ---------------------------------------------------------------- HTTP (the edge)

const httpSeconds = createFastHistogram(registry, {
  name: "shopmesh_http_server_request_duration_seconds",
  help: "Time from an HTTP request's arrival to the end of its response, by route, protocol and status.",
  labelNames: ["route", "protocol", "status"],
  buckets: LATENCY_BUCKETS,
});
countOf(registry, httpSeconds, {
  name: "shopmesh_http_server_requests_total",
  help: "HTTP requests answered by the edge, by route, protocol and HTTP status.",
});

const httpSeries = new Map<string, Map<string, Series[]>>();

/** Records one finished HTTP request; every label must come from a bounded set. */
export function observeHttpRequest(
  route: string,
  protocol: string,
  status: number,
  seconds: number,
): void {
  let byProtocol = httpSeries.get(route);
  if (byProtocol === undefined) {
    byProtocol = new Map();
    httpSeries.set(route, byProtocol);
  }
  let byStatus = byProtocol.get(protocol);
  if (byStatus === undefined) {
    byStatus = [];
    byProtocol.set(protocol, byStatus);
  }
  let series = byStatus[status];
  if (series === undefined) {
    series = httpSeconds.series(route, protocol, String(status));
    byStatus[status] = series;
  }
  series.observe(seconds);
}

// ---------------------------------------------------------------- outbox relay

const outboxSources = new Set<() => Promise<number>>();

new Gauge({
  name: "shopmesh_outbox_backlog",
  help: "Outbox rows written but not yet published (counted at scrape time).",
  registers: [registry],
  async collect() {
    let total = 0;
    for (const backlog of outboxSources) {
      // A database that does not answer must not fail the whole scrape.
      total += await backlog().catch(() => 0);
    }
    this.set(total);
  },
});
const outboxPublished = new Counter({
  name: "shopmesh_outbox_published_total",
  help: "Outbox rows published to JetStream (acknowledged by the stream).",
  registers: [registry],
});
const outboxFailures = new Counter({
  name: "shopmesh_outbox_publish_failures_total",
  help: "Outbox batches that failed to publish (retried).",
  registers: [registry],
});
const outboxLag = createFastHistogram(registry, {
  name: "shopmesh_outbox_publish_lag_seconds",
  help: "Time from an outbox row's creation (created_at, its transaction) to JetStream's ack.",
  labelNames: [],
  buckets: LAG_BUCKETS,
}).series();

/** Counts the backlog of a relay at every scrape until the returned function is called. */
export function watchOutboxBacklog(backlog: () => Promise<number>): () => void {
  const source = () => backlog();
  outboxSources.add(source);
  return () => outboxSources.delete(source);
}

/** Records a published batch: one lag sample per row. */
export function observeOutboxPublished(createdAt: readonly Date[], now = Date.now()): void {
  outboxPublished.inc(createdAt.length);
  for (const t of createdAt) outboxLag.observe(Math.max(0, (now - t.getTime()) / 1000));
}

export function observeOutboxFailure(): void {
  outboxFailures.inc();
}

// ---------------------------------------------------------------- consumers

const consumerPending = new Gauge({
  name: "shopmesh_consumer_pending",
  help: "Messages on the stream not yet delivered to the durable consumer (num_pending, sampled).",
  labelNames: ["consumer"] as const,
  registers: [registry],
});
const consumerAckPending = new Gauge({
  name: "shopmesh_consumer_ack_pending",
  help: "Messages delivered to the durable consumer and not yet acknowledged (num_ack_pending, sampled).",
  labelNames: ["consumer"] as const,
  registers: [registry],
});
const consumerDelivered = new Counter({
  name: "shopmesh_consumer_delivered_total",
  help: "Messages delivered to this process's handler, redeliveries included.",
  labelNames: ["consumer"] as const,
  registers: [registry],
});
const consumerRedelivered = new Counter({
  name: "shopmesh_consumer_redelivered_total",
  help: "Deliveries of a message that had been delivered before (delivery count > 1).",
  labelNames: ["consumer"] as const,
  registers: [registry],
});
const consumerDeadLettered = new Counter({
  name: "shopmesh_consumer_dead_lettered_total",
  help: "Messages sent to the dead-letter stream (SHOP_DLQ) after their last failed delivery.",
  labelNames: ["consumer"] as const,
  registers: [registry],
});
const consumerSeconds = new Histogram({
  name: "shopmesh_consumer_handling_seconds",
  help: "Time an event handler took, by consumer and outcome (ack, retry, dead_letter).",
  labelNames: ["consumer", "outcome"] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export type ConsumerOutcome = "ack" | "retry" | "dead_letter";

/** The metrics of one durable consumer, children bound once. */
export interface ConsumerMetrics {
  /** Call when a message arrives; returns the start time to pass to `handled`. */
  delivered(deliveryCount: number): number;
  handled(outcome: ConsumerOutcome, started: number): void;
  /** Stops sampling and removes the consumer's series. */
  stop(): void;
}

/**
 * Metrics of the durable consumer `durable`; `info` (the consumer's JetStream info)
 * is sampled every `sampleMs` for the pending gauges.
 */
export function createConsumerMetrics(
  durable: string,
  info: () => Promise<{ num_pending: number; num_ack_pending: number }>,
  sampleMs = 5_000,
): ConsumerMetrics {
  const delivered = consumerDelivered.labels(durable);
  const redelivered = consumerRedelivered.labels(durable);
  const deadLettered = consumerDeadLettered.labels(durable);
  const pending = consumerPending.labels(durable);
  const ackPending = consumerAckPending.labels(durable);
  const seconds = {
    ack: consumerSeconds.labels(durable, "ack"),
    retry: consumerSeconds.labels(durable, "retry"),
    dead_letter: consumerSeconds.labels(durable, "dead_letter"),
  };
  let sampling = false;
  const sample = () => {
    if (sampling) return;
    sampling = true;
    info()
      .then((i) => {
        pending.set(i.num_pending);
        ackPending.set(i.num_ack_pending);
      })
      // NATS away: keep the last value; the consumer's own loop logs the outage.
      .catch(() => undefined)
      .finally(() => {
        sampling = false;
      });
  };
  const timer = setInterval(sample, sampleMs);
  timer.unref();
  sample();
  return {
    delivered(deliveryCount) {
      delivered.inc();
      if (deliveryCount > 1) redelivered.inc();
      return performance.now();
    },
    handled(outcome, started) {
      if (outcome === "dead_letter") deadLettered.inc();
      seconds[outcome].observe((performance.now() - started) / 1000);
    },
    stop() {
      clearInterval(timer);
      consumerPending.remove(durable);
      consumerAckPending.remove(durable);
    },
  };
}

// ---------------------------------------------------------------- database pool

interface WatchedPool {
  sql: postgres.Sql;
  /** The application_name every connection of the pool carries (unique per pool). */
  applicationName: string;
  url: string;
  /** A connection of its own for the statistics, opened at the first scrape. */
  stats?: postgres.Sql;
  /** The last counts read, reported again when the server does not answer in time. */
  last: Record<string, number>;
}
const pools = new Set<WatchedPool>();

new Gauge({
  name: "shopmesh_db_pool_max",
  help: "Connections the postgres.js pool may open.",
  registers: [registry],
  collect() {
    let max = 0;
    for (const p of pools) max += p.sql.options.max;
    this.set(max);
  },
});

new Gauge({
  name: "shopmesh_db_pool_connections",
  help: "Connections of this process's pool open on the server, by pg_stat_activity state (sampled at scrape).",
  labelNames: ["state"] as const,
  registers: [registry],
  async collect() {
    const counts: Record<string, number> = { active: 0, idle: 0, idle_in_transaction: 0 };
    for (const pool of pools) {
      for (const [state, n] of Object.entries(await poolStates(pool))) {
        counts[state] = (counts[state] ?? 0) + n;
      }
    }
    this.reset();
    for (const [state, n] of Object.entries(counts)) this.labels(state).set(n);
  },
});

/**
 * postgres.js exposes no pool statistics: ask the server about the connections that
 * carry the pool's application_name. On a connection of its own, so that a pool with
 * every connection busy (when the number matters most) does not hold the scrape up.
 */
async function poolStates(pool: WatchedPool): Promise<Record<string, number>> {
  pool.stats ??= postgres(pool.url, {
    max: 1,
    idle_timeout: 120,
    onnotice: () => {},
    connection: { application_name: `${pool.applicationName}-stats` },
  });
  try {
    const rows = await withTimeout(
      pool.stats<{ state: string | null; n: number }[]>`
        select state, count(*)::int as n from pg_stat_activity
        where application_name = ${pool.applicationName} group by state`,
      1_000,
    );
    const counts: Record<string, number> = {};
    for (const r of rows) {
      const state = (r.state ?? "unknown").replace(/\W+/g, "_").replace(/_$/, "");
      counts[state] = (counts[state] ?? 0) + r.n;
    }
    pool.last = counts;
  } catch {
    // The server is away or slow: the last numbers; the service's own errors say why.
  }
  return pool.last;
}

/**
 * Reports the pool `sql` at `url`, whose connections carry `applicationName`, until
 * the returned function is called (it closes the statistics connection).
 */
export function watchDbPool(
  sql: postgres.Sql,
  applicationName: string,
  url: string,
): () => Promise<void> {
  const pool: WatchedPool = { sql, applicationName, url, last: {} };
  pools.add(pool);
  return async () => {
    pools.delete(pool);
    await pool.stats?.end({ timeout: 1 });
  };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out")), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
