/**
 * Events on NATS JetStream (nats.js v3: @nats-io/transport-node + @nats-io/jetstream),
 * effectively once:
 * - `connectBus` connects (reconnecting forever) and provisions the streams;
 * - `startOutboxRelay` publishes a service's outbox rows in order, with
 *   Nats-Msg-Id = event id (JetStream drops duplicates in its window), then marks them;
 * - `startConsumer` runs a durable pull consumer with explicit ack, bounded redelivery
 *   with backoff and a dead-letter stream that keeps the message;
 * - `processOnce` records the event id in the `inbox` table in the same transaction as
 *   the handler's effect, so a redelivery never applies an effect twice.
 */
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import {
  connect,
  type NatsConnection,
  nanos,
  headers as natsHeaders,
} from "@nats-io/transport-node";
import { sql } from "drizzle-orm";
import { index, pgTable, primaryKey, text, timestamp, uuid } from "drizzle-orm/pg-core";
import type postgres from "postgres";
import { type CallContext, runWithCall } from "./context.js";
import { commitWith, onCommitted, pipelined, reusable, type TransactionalDb } from "./db.js";
import { applyAlone, applyBatched, type InboxEvent } from "./event-batches.js";
import { childWhenUsed, type Logger } from "./logger.js";
import {
  createConsumerMetrics,
  observeOutboxFailure,
  observeOutboxPublished,
  watchOutboxBacklog,
} from "./metrics.js";
import { OUTBOX_COMMITTED, type Tx } from "./outbox.js";
import { endSpan, extractTrace, injectTrace, type Span, SpanKind, startSpan } from "./tracing.js";

/** The one stream of domain events. */
export const STREAM = "SHOP";
/** How long the stream keeps a message (and a new consumer can still be given it). */
export const STREAM_MAX_AGE_MS = 7 * 24 * 3600_000;
/** Where messages go after their last failed delivery, kept for a human to look at. */
export const DLQ_STREAM = "SHOP_DLQ";

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  close(): Promise<void>;
}

/** Counters for the metrics endpoint and tests. */
export const busCounters = {
  published: 0,
  delivered: 0,
  redelivered: 0,
  deadLettered: 0,
};

export async function connectBus(options: {
  url: string;
  name: string;
  logger: Logger;
}): Promise<Bus> {
  const { logger } = options;
  const nc = await connect({
    servers: options.url.split(","),
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    // Every JetStream publish is a request; by default each one captures a stack trace
    // up front in case it fails (2–3 % of a busy service's CPU in the saga profile). Our
    // own logs say which publish failed.
    noAsyncTraces: true,
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect")
        logger.warn({ nats: s.type }, "nats connection");
    }
  })().catch(() => undefined);
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, {
    name: STREAM,
    subjects: ["shop.>"],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    duplicate_window: nanos(2 * 60_000),
    max_age: nanos(STREAM_MAX_AGE_MS),
  });
  await ensureStream(jsm, {
    name: DLQ_STREAM,
    subjects: ["dlq.>"],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
  });
  return {
    nc,
    js: jetstream(nc),
    jsm,
    close: async () => {
      await nc.drain().catch(() => nc.close());
    },
  };
}

async function ensureStream(
  jsm: JetStreamManager,
  config: Parameters<JetStreamManager["streams"]["add"]>[0],
) {
  try {
    await jsm.streams.add(config);
  } catch (err) {
    // Already there (another replica or an earlier start): bring its config up to date.
    if (!/already in use|already exists/i.test(String((err as Error).message))) throw err;
    await jsm.streams.update(config.name as string, config);
  }
}

/**
 * A PRODUCER span for publishing one outbox row, child of the span that wrote the row
 * (its `traceparent`); the message carries the publish span's context, so consumers'
 * spans are its children. Request id and other headers of the row are copied as they are.
 */
function publishSpan(row: { id: string; subject: string; headers: Record<string, string> | null }) {
  const h = row.headers ?? {};
  const { span, context } = startSpan(
    `publish ${row.subject}`,
    SpanKind.PRODUCER,
    extractTrace((k) => h[k]),
    {
      "messaging.system": "nats",
      "messaging.operation.type": "send",
      "messaging.destination.name": row.subject,
      "messaging.message.id": row.id,
    },
  );
  const headers = natsHeaders();
  for (const [k, v] of Object.entries(h)) {
    if (k !== "traceparent" && k !== "tracestate") headers.set(k, v);
  }
  injectTrace(context, (k, v) => headers.set(k, v));
  return { span, headers };
}

export interface OutboxRelay {
  /** Publish now instead of waiting for the next notification or poll. */
  kick(): void;
  /** Rows not yet published (the outbox backlog). */
  backlog(): Promise<number>;
  stop(): Promise<void>;
}

/** Advisory lock key of the outbox relay (per database: one per service). */
export const RELAY_LOCK = 0x5d0b_0b0c;

/**
 * Publishes unsent outbox rows in `seq` order. Woken after the commit of each of this
 * process's transactions that wrote outbox rows (enqueueEvent signals it on the tuned
 * pool), and by a short poll, which picks up rows another process wrote and is the
 * safety net. A batch is claimed under a transaction-scoped advisory lock (one replica's
 * relay publishes at a time, keeping the order; another takes over the moment that
 * transaction ends) and with FOR UPDATE SKIP LOCKED, so replicas never publish the same
 * row at once; a relay that finds the lock taken tries again a few milliseconds later.
 * A crash between publish and mark re-publishes with the same Nats-Msg-Id, which
 * JetStream drops.
 */
export function startOutboxRelay(options: {
  sql: postgres.Sql;
  bus: Bus;
  logger: Logger;
  batchSize?: number;
  pollMs?: number;
}): OutboxRelay {
  const { sql: pg, bus, logger } = options;
  const batchSize = options.batchSize ?? 256;
  const pollMs = options.pollMs ?? 500;
  let stopped = false;
  let running: Promise<void> | undefined;
  let again = false;
  let failures = 0;

  /** Rows published, or "busy" when another replica's relay holds the lock. */
  const publishBatch = async (): Promise<number | "busy"> => {
    let outcome: number | "busy" = 0;
    let createdMs: number[] = [];
    await pg.begin(async (tx) => {
      // One relay of the service publishes at a time: two replicas claiming different
      // batches would publish an aggregate's later event before its earlier one. The
      // lock ends with the transaction, also when the replica dies mid-batch. The
      // statements go out in one write; the claim repeats the (re-entrant) lock as a
      // one-time filter, so without the lock it claims nothing.
      //
      // The outbox is a queue that grows by a day of published rows: its claim and mark
      // must find their rows through an index whatever the planner believes. PostgreSQL
      // plans a prepared statement once for all values after five runs, and when that
      // happens while the table is young and not yet analysed (autovacuum not come by,
      // or off), the plan it keeps is a sequential scan, paid again at every pass as the
      // table grows (a 30 s saga read 6 M rows of payments' outbox that way). So in the
      // relay's transactions, where these are the only statements, scans are not chosen.
      const [, [lock], rows] = await pipelined(
        () => tx`set local enable_seqscan = off`,
        () => tx<{ locked: boolean }[]>`select pg_try_advisory_xact_lock(${RELAY_LOCK}) as locked`,
        () => tx<
          {
            seq: string;
            id: string;
            subject: string;
            payload: Buffer;
            headers: Record<string, string>;
            created_ms: number;
          }[]
        >`
          select seq, id, subject, payload, headers,
            extract(epoch from created_at)::float8 * 1000 as created_ms from outbox
          where (select pg_try_advisory_xact_lock(${RELAY_LOCK})) and published_at is null
          order by seq limit ${batchSize} for update skip locked`,
      );
      if (rows.length === 0) {
        outcome = lock?.locked ? 0 : "busy";
        return undefined;
      }
      // Issued in order on one connection, so JetStream stores them in order.
      await Promise.all(
        rows.map((r) => {
          const { span, headers } = publishSpan(r);
          return bus.js
            .publish(r.subject, r.payload, { msgID: r.id, headers, timeout: 5_000 })
            .then(
              (ack) => {
                endSpan(span, false);
                return ack;
              },
              (err: unknown) => {
                endSpan(span, true, String((err as Error).message));
                throw err;
              },
            );
        }),
      );
      outcome = rows.length;
      // created_ms, not created_at: drizzle makes postgres.js return timestamps as text.
      createdMs = rows.map((r) => r.created_ms);
      // Marked published in the write that commits.
      return commitWith(
        () =>
          tx`update outbox set published_at = now() where seq = any(${rows.map((r) => r.seq)}::bigint[])`,
      );
    });
    if (createdMs.length > 0) {
      busCounters.published += createdMs.length;
      observeOutboxPublished(createdMs.map((ms) => new Date(ms)));
    }
    return outcome;
  };

  let retry: NodeJS.Timeout | undefined;
  let busyTries = 0;
  const drain = async () => {
    do {
      again = false;
      try {
        let published: number | "busy";
        do published = await publishBatch();
        while (!stopped && published === batchSize);
        // Rows this process committed may wait behind the other relay's batch: look again
        // soon rather than at the next poll.
        // (Doubling from 5 ms up to the poll interval while it stays taken: the other
        // relay may be waiting out a NATS outage with the lock held.)
        if (published === "busy" && !stopped) {
          retry ??= setTimeout(retryKick, Math.min(BUSY_RETRY_MS * 2 ** busyTries++, pollMs));
        } else busyTries = 0;
        if (failures > 0) logger.info({ failures }, "outbox relay publishing again");
        failures = 0;
      } catch (err) {
        failures++;
        observeOutboxFailure();
        if (failures === 1 || failures % 20 === 0)
          logger.warn({ err, failures }, "outbox relay cannot publish; retrying");
        await new Promise((r) => setTimeout(r, Math.min(250 * failures, 2_000)));
        again = !stopped;
      }
    } while (again && !stopped);
  };

  // A signal arrives per committed transaction; waiting a millisecond before a pass lets
  // one pass (one transaction) publish the events of many commits instead of one each.
  let scheduled: NodeJS.Timeout | undefined;
  const kick = () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    scheduled ??= setTimeout(() => {
      scheduled = undefined;
      if (stopped || running) return;
      running = drain().finally(() => {
        running = undefined;
      });
    }, 1);
  };
  const retryKick = () => {
    retry = undefined;
    kick();
  };

  const unlisten = onCommitted(pg, OUTBOX_COMMITTED, kick);
  const timer = setInterval(kick, pollMs);
  kick();

  const relay: OutboxRelay = {
    kick,
    async backlog() {
      const [row] = await pg<
        { n: number }[]
      >`select count(*)::int as n from outbox where published_at is null`;
      return row?.n ?? 0;
    },
    async stop() {
      stopped = true;
      clearTimeout(scheduled);
      clearTimeout(retry);
      unwatch();
      unlisten();
      clearInterval(timer);
      await running;
    },
  };
  const unwatch = watchOutboxBacklog(() => relay.backlog());
  return relay;
}

/** How soon a relay that found another replica's relay publishing looks again (first try). */
const BUSY_RETRY_MS = 5;

/** The inbox: which events a consumer has already applied. */
export const inbox = pgTable(
  "inbox",
  {
    consumer: text("consumer").notNull(),
    eventId: uuid("event_id").notNull(),
    processedAt: timestamp("processed_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.consumer, t.eventId] }),
    // Retention deletes the oldest rows (retention.ts).
    index("inbox_processed_at").on(t.processedAt),
  ],
);

export type { TransactionalDb } from "./db.js";

/**
 * Runs `effect` in a transaction that also records (consumer, eventId) in the inbox.
 * Returns false, doing nothing, when the event was already applied.
 *
 * `prefetch`, when given, is a read sent in the same write as the inbox insert (one
 * round trip fewer), and its result is handed to `effect`: typically the row the event
 * is about, locked. It runs for a duplicate too, so it must change nothing. `effect`
 * may return `commitWith(...)` (runtime/db.ts): its last statements then go out with
 * COMMIT in one write.
 *
 * `key`, when given, names what the effect changes (an order id, a user id): events
 * with keys are applied in batches, one transaction for several at once, never two of
 * one key together (event-batches.ts).
 */
export async function processOnce<P = undefined>(
  db: TransactionalDb,
  consumer: string,
  eventId: string,
  /** Its answer is ignored, unless it is `commitWith(...)`'s. */
  effect: (tx: Tx, prefetched: P) => Promise<unknown>,
  prefetch?: (tx: Tx) => PromiseLike<P>,
  key?: string,
): Promise<boolean> {
  const event: InboxEvent<P> = {
    consumer,
    eventId,
    effect,
    prefetch,
    record: (tx) => recordEvent(tx, { consumer, eventId }) as Promise<unknown[]>,
  };
  if (key === undefined) return applyAlone(db, event);
  return applyBatched(db, event as InboxEvent<unknown>, key);
}

/** The inbox row of a consumed event; no row when it was already there. Built once. */
const recordEvent = reusable(
  () =>
    sql`insert into inbox (consumer, event_id) values (${sql.placeholder("consumer")}, ${sql.placeholder("eventId")})
      on conflict do nothing returning event_id`,
);

export interface EventMessage {
  subject: string;
  data: Uint8Array;
  /** Nats-Msg-Id, which is the outbox row id and the event's event_id. */
  eventId: string;
  headers: Record<string, string>;
  deliveryCount: number;
}

/**
 * Thrown by a handler for a message that can never succeed (undecodable payload,
 * impossible content): it goes to the dead-letter stream at once, without retries.
 */
export class PermanentEventError extends Error {
  override name = "PermanentEventError";
}

export interface Consumer {
  stop(): Promise<void>;
}

/**
 * A durable pull consumer on the SHOP stream. A handler that throws is redelivered after
 * `backoffMs[n]`; after `maxDeliver` deliveries the message goes to `dlq.<durable>` (kept in
 * the SHOP_DLQ stream), is logged and counted, and the consumer carries on.
 */
export async function startConsumer(options: {
  bus: Bus;
  durable: string;
  /** One subject per consumer (nats-server 2.9, as Debian ships it, has no filter_subjects). */
  subject: string;
  handler: (msg: EventMessage) => Promise<void>;
  logger: Logger;
  maxDeliver?: number;
  backoffMs?: number[];
  ackWaitMs?: number;
  /**
   * Deliveries handled at once by this process (default 64: as many as one pull brings,
   * so that batched effects (processOnce with a key) see a backlog at once and take it in
   * few transactions; with 16, a consumer whose transactions slowed down under load fell
   * behind an open-loop 500 orders/s). Handlers must tolerate it, as they already must
   * tolerate replicas: effects go through processOnce (the inbox) and lock the rows they
   * change.
   */
  concurrency?: number;
}): Promise<Consumer> {
  const { bus, durable, logger, handler } = options;
  const concurrency = options.concurrency ?? 64;
  const maxDeliver = options.maxDeliver ?? 6;
  const backoffMs = options.backoffMs ?? [100, 500, 2_000, 5_000, 15_000];
  const config = {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: options.subject,
    max_deliver: maxDeliver,
    ack_wait: nanos(options.ackWaitMs ?? 30_000),
  };
  try {
    await bus.jsm.consumers.add(STREAM, config);
  } catch (err) {
    if (!/already|exists/i.test(String((err as Error).message))) throw err;
    await bus.jsm.consumers.update(STREAM, durable, config);
  }
  const log = logger.child({ consumer: durable });
  const metrics = createConsumerMetrics(durable, () => bus.jsm.consumers.info(STREAM, durable));
  let stopped = false;
  let current: { close(): Promise<unknown> } | undefined;
  const inFlight = new Set<Promise<void>>();

  const handle = async (m: JsMsg) => {
    const headers: Record<string, string> = {};
    for (const k of m.headers?.keys() ?? []) headers[k] = m.headers?.get(k) ?? "";
    const deliveryCount = m.info.deliveryCount;
    busCounters.delivered++;
    if (deliveryCount > 1) busCounters.redelivered++;
    const started = metrics.delivered(deliveryCount);
    try {
      const message: EventMessage = {
        subject: m.subject,
        data: m.data,
        eventId: headers["Nats-Msg-Id"] ?? `${STREAM}-${m.seq}`,
        headers,
        deliveryCount,
      };
      await runInEventContext(message, log, durable, () => handler(message));
      m.ack();
      metrics.handled("ack", started);
    } catch (err) {
      if (deliveryCount >= maxDeliver || err instanceof PermanentEventError) {
        await deadLetter(bus, durable, m, err);
        busCounters.deadLettered++;
        metrics.handled("dead_letter", started);
        log.error({ err, subject: m.subject, seq: m.seq, deliveryCount }, "dead-lettered event");
        m.term();
      } else {
        const delay = backoffMs[Math.min(deliveryCount - 1, backoffMs.length - 1)] ?? 1_000;
        log.warn(
          { err, subject: m.subject, deliveryCount, retryInMs: delay },
          "event handler failed",
        );
        m.nak(delay);
        metrics.handled("retry", started);
      }
    }
  };

  const loop = async () => {
    while (!stopped) {
      try {
        const consumer = await bus.js.consumers.get(STREAM, durable);
        const messages = await consumer.consume({ max_messages: 64 });
        current = messages;
        for await (const m of messages) {
          if (stopped) {
            // Prefetched but not started: back to the stream for another replica (or this
            // consumer's next start) within a second, instead of after ack_wait. The
            // delay lets the server drop this consumer's pull request first: a message
            // naked at once could be redelivered into it, and sit until ack_wait. The
            // iterator ends once stop() has closed it.
            m.nak(1_000);
            continue;
          }
          const handling: Promise<void> = handle(m)
            .catch((err: unknown) => log.error({ err }, "consumer handling failed"))
            .finally(() => inFlight.delete(handling));
          inFlight.add(handling);
          if (inFlight.size >= concurrency) await Promise.race(inFlight);
        }
      } catch (err) {
        if (stopped) break;
        log.warn({ err }, "consumer interrupted; resubscribing");
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  };
  const running = loop();

  return {
    /** Stops pulling, hands the prefetched messages back (nak), finishes those in hand. */
    async stop() {
      stopped = true;
      metrics.stop();
      // Unsubscribes at once (nothing new arrives, so a message handed back cannot come
      // straight back here); the loop then naks what was buffered.
      const closing = current?.close();
      await Promise.allSettled([...inFlight]);
      await closing;
      await running;
    },
  };
}

/**
 * Runs `fn` (a consumer's handler) in the context of one delivery of `m`: a CONSUMER
 * span, child of the publish span that sent the message, and a CallContext carrying
 * the message's request id, so the events the handler writes (enqueueEvent), the
 * calls it makes and its log lines continue the same trace.
 */
export async function runInEventContext<T>(
  m: EventMessage,
  logger: Logger,
  durable: string,
  fn: () => Promise<T>,
): Promise<T> {
  const ctx = eventContext(m, logger, durable);
  const started = performance.now();
  // One line per handled delivery, as the gRPC server writes one per call (on the
  // service's logger, not the context's child, which most deliveries never need).
  const done = (ok: boolean) => {
    if (!logger.isLevelEnabled("info")) return;
    logger.info(
      {
        subject: m.subject,
        event_id: m.eventId,
        request_id: ctx.requestId,
        ok,
        delivery: m.deliveryCount,
        duration_ms: Math.round((performance.now() - started) * 100) / 100,
      },
      "event",
    );
  };
  return runWithCall(ctx, async () => {
    try {
      const out = await fn();
      done(true);
      endSpan(ctx.span, false);
      return out;
    } catch (err) {
      done(false);
      endSpan(ctx.span, true, String((err as Error).message ?? err).slice(0, 200));
      throw err;
    }
  });
}

function eventContext(
  m: EventMessage,
  logger: Logger,
  durable: string,
): CallContext & { span: Span } {
  const lower = new Map(Object.entries(m.headers).map(([k, v]) => [k.toLowerCase(), v]));
  const requestId = lower.get("x-request-id") ?? m.eventId;
  const { span, context } = startSpan(
    `process ${m.subject}`,
    SpanKind.CONSUMER,
    extractTrace((k) => lower.get(k)),
    {
      "messaging.system": "nats",
      "messaging.operation.type": "process",
      "messaging.destination.name": m.subject,
      "messaging.consumer.group.name": durable,
      "messaging.message.id": m.eventId,
      ...(m.deliveryCount > 1 ? { "messaging.nats.delivery_count": m.deliveryCount } : {}),
      "shop.request_id": requestId,
    },
  );
  // Made when first asked for, as in grpc-server.ts: most events use neither.
  const childLogger = childWhenUsed(logger, {
    subject: m.subject,
    event_id: m.eventId,
    request_id: requestId,
  });
  let signal: AbortSignal | undefined;
  return {
    method: `event:${m.subject}`,
    deadline: undefined,
    get signal() {
      signal ??= new AbortController().signal;
      return signal;
    },
    requestId,
    get logger() {
      return childLogger();
    },
    header: (name) => lower.get(name.toLowerCase()),
    trace: context,
    span,
  };
}

async function deadLetter(bus: Bus, durable: string, m: JsMsg, err: unknown) {
  const h = natsHeaders();
  for (const k of m.headers?.keys() ?? [])
    h.set(k === "Nats-Msg-Id" ? "Shop-Event-Id" : k, m.headers?.get(k) ?? "");
  h.set("Shop-Original-Subject", m.subject);
  h.set("Shop-Error", String(err instanceof Error ? err.message : err).slice(0, 500));
  await bus.js.publish(`dlq.${durable}`, m.data, { headers: h }).catch(() => undefined);
}
