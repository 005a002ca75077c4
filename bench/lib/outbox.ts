/**
 * The outbox scenario, on a scratch database of the stack's PostgreSQL (the catalog's
 * migrations create the same `outbox` table every service has) and the stack's NATS:
 *
 * 1. ceiling: N raw JetStream publishes from this process, in batches of the relay's
 *    size (256) issued together, as the relay issues them;
 * 2. bulk: N events written with the runtime's enqueueEvent (transactions of 500,
 *    8 at a time) while no relay runs, then startOutboxRelay; the time until the last one is seen
 *    on NATS gives the publish rate, and until the backlog is zero the drain time;
 * 3. single events: one enqueueEvent transaction at a time with the relay idle; the
 *    latency from COMMIT returning to the message arriving on a NATS subscription.
 * Subjects are shop.bench.*: inside the SHOP stream, consumed by no service.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { OrderConfirmedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { connectBus, startOutboxRelay } from "@shopmesh/runtime/bus.js";
import { dropServiceDatabase, ensureServiceDatabase, openDatabase } from "@shopmesh/runtime/db.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { enqueueEvent, type Tx } from "@shopmesh/runtime/outbox.js";
import { repoRoot } from "./stack.js";
import { type Percentiles, Recorder } from "./stats.js";

export interface OutboxOptions {
  pgAdminUrl: string;
  natsUrl: string;
  events: number;
  singles: number;
}

export interface OutboxResult {
  events: number;
  /** Raw JetStream publish rate from this process (the ceiling). */
  rawPublishPerSec: number;
  /** enqueueEvent rate while writing the backlog (500 per transaction, 8 transactions at a time). */
  enqueuePerSec: number;
  /** Relay publish rate: events / time until the last one was seen on NATS. */
  relayPublishPerSec: number;
  /** Relay start → backlog zero (every row marked published). */
  drainMs: number;
  /** Single events: COMMIT → seen on NATS. */
  singleLatencyMs: Percentiles;
  /**
   * Single events: the enqueue transaction itself (BEGIN, insert, pg_notify, COMMIT):
   * what one small transaction costs on this machine right now, for comparison with
   * the saga's consumers, which run one such transaction per event, one at a time.
   */
  singleTransactionMs: Percentiles;
}

const BATCH = 256;

export async function runOutbox(o: OutboxOptions): Promise<OutboxResult> {
  const logger = createLogger("bench-outbox", "warn");
  const name = `bench_outbox_${randomBytes(4).toString("hex")}`;
  const url = await ensureServiceDatabase(o.pgAdminUrl, name, randomBytes(12).toString("hex"));
  const database = await openDatabase({
    url,
    schema: {},
    migrationsFolder: `${repoRoot}services/catalog/src/db/migrations`,
  });
  const bus = await connectBus({ url: o.natsUrl, name: "bench-outbox", logger });
  const seen = new Map<string, number>();
  let waiter: { id?: string; count?: number; resolve: () => void } | undefined;
  bus.nc.subscribe("shop.bench.outbox", {
    callback: (_err, msg) => {
      const id = msg.headers?.get("Nats-Msg-Id") ?? "";
      seen.set(id, performance.now());
      if (
        waiter &&
        ((waiter.id !== undefined && waiter.id === id) ||
          (waiter.count !== undefined && seen.size >= waiter.count))
      ) {
        const w = waiter;
        waiter = undefined;
        w.resolve();
      }
    },
  });
  const until = (w: { id?: string; count?: number }, timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      if ((w.id !== undefined && seen.has(w.id)) || (w.count !== undefined && seen.size >= w.count))
        return resolve();
      const timer = setTimeout(() => reject(new Error(`outbox: timed out waiting`)), timeoutMs);
      waiter = {
        ...w,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
    });
  await bus.nc.flush();

  const enqueue = (tx: Tx) =>
    enqueueEvent(tx, "shop.bench.outbox", OrderConfirmedSchema, {
      orderId: randomUUID(),
      userId: randomUUID(),
    });

  try {
    // 1. Ceiling: raw JetStream publishes, batch by batch.
    const payload = new Uint8Array(60);
    let t = performance.now();
    for (let i = 0; i < o.events; i += BATCH) {
      const n = Math.min(BATCH, o.events - i);
      await Promise.all(
        Array.from({ length: n }, () =>
          bus.js.publish("shop.bench.raw", payload, { msgID: randomUUID(), timeout: 10_000 }),
        ),
      );
    }
    const rawPublishPerSec = o.events / ((performance.now() - t) / 1000);

    // 2. Bulk: write the backlog (8 transactions at a time), then let the relay publish it.
    t = performance.now();
    let next = 0;
    const writer = async () => {
      while (next < o.events) {
        const n = Math.min(500, o.events - next);
        next += n;
        await database.db.transaction(async (tx) => {
          for (let k = 0; k < n; k++) await enqueue(tx as unknown as Tx);
        });
      }
    };
    await Promise.all(Array.from({ length: 8 }, writer));
    const enqueuePerSec = o.events / ((performance.now() - t) / 1000);
    t = performance.now();
    const relay = startOutboxRelay({ sql: database.sql, bus, logger });
    await until({ count: o.events }, 300_000);
    const relayPublishPerSec = o.events / ((performance.now() - t) / 1000);
    while ((await relay.backlog()) > 0) await sleep(5);
    const drainMs = performance.now() - t;

    // 3. One event at a time, relay idle in between.
    const singles = new Recorder();
    const transactions = new Recorder();
    for (let i = 0; i < o.singles; i++) {
      await sleep(5);
      const begun = performance.now();
      const id = await database.db.transaction((tx) => enqueue(tx as unknown as Tx));
      const committed = performance.now();
      transactions.record(committed - begun);
      await until({ id }, 10_000);
      singles.record(Math.max(0, (seen.get(id) ?? committed) - committed));
    }
    await relay.stop();
    return {
      events: o.events,
      rawPublishPerSec,
      enqueuePerSec,
      relayPublishPerSec,
      drainMs,
      singleLatencyMs: singles.percentiles(),
      singleTransactionMs: transactions.percentiles(),
    };
  } finally {
    await bus.close();
    await database.close();
    await dropServiceDatabase(o.pgAdminUrl, name).catch(() => undefined);
  }
}
