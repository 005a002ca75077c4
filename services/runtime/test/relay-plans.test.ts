/**
 * The outbox relay's statements find their rows through an index however the outbox grew
 * after PostgreSQL settled on their plans. A prepared statement gets one plan for all
 * values after five runs; made while the outbox is small and never analysed (autovacuum
 * not come by yet, or off, as on this machine's CI server), that plan is a sequential
 * scan, and every later pass would read the whole table — a day of published rows.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Bus,
  connectBus,
  createLogger,
  type Database,
  enqueueEvent,
  openDatabase,
  startOutboxRelay,
} from "../src/index.js";
import { createTestDatabase } from "../src/testing.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const logger = createLogger("relay-plans-test", process.env["TEST_LOG"] ?? "silent");
const migrationsFolder = fileURLToPath(new URL("./fixtures/migrations", import.meta.url));
const subject = `shop.p${randomBytes(4).toString("hex")}.user_registered`;

let database: Database<Record<string, never>>;
let drop: () => Promise<void>;
let bus: Bus;

beforeAll(async () => {
  const t = await createTestDatabase("relayplans");
  drop = t.drop;
  await (await openDatabase({ url: t.url, schema: {}, migrationsFolder })).close();
  database = await openDatabase({ url: t.url, schema: {}, max: 1 });
  bus = await connectBus({ url: NATS_URL, name: "relay-plans-test", logger });
});

afterAll(async () => {
  await bus?.close();
  await database?.close();
  await drop?.();
});

/** `n` events in one transaction; resolves when the relay has published them all. */
async function publish(n: number) {
  let left = n;
  const seen = new Promise<void>((resolve) => {
    bus.nc.subscribe(subject, {
      max: n,
      callback: () => {
        if (--left === 0) resolve();
      },
    });
  });
  await bus.nc.flush();
  await database.db.transaction(async (tx) => {
    for (let i = 0; i < n; i++)
      await enqueueEvent(tx, subject, UserRegisteredSchema, { userId: `u${i}`, email: "u@x.co" });
  });
  await seen;
}

async function outboxStats() {
  const [row] = await database.sql<{ seq_tup_read: string; idx_scan: string }[]>`
    select seq_tup_read, coalesce(idx_scan, 0) as idx_scan
    from pg_stat_user_tables where relname = 'outbox'`;
  return { seqRead: Number(row?.seq_tup_read ?? 0), idxScans: Number(row?.idx_scan ?? 0) };
}

describe("the outbox relay's plans", () => {
  it("do not scan the whole outbox at every pass once it has grown", async () => {
    // One connection (max: 1): every pass runs on it, so its plans are the ones settled
    // on while the table held a handful of rows.
    const relay = startOutboxRelay({ sql: database.sql, bus, logger, pollMs: 60_000 });
    try {
      // Passes of 40 rows while the table is small: for them a scan is the cheaper plan.
      for (let i = 0; i < 8; i++) await publish(40);
      // A day of published rows, as retention keeps them.
      await database.sql`
        insert into outbox (id, subject, type, payload, published_at)
        select gen_random_uuid(), ${subject}, 'x', '\\x00'::bytea, now()
        from generate_series(1, 20000)`;
      const before = await outboxStats();
      for (let i = 0; i < 10; i++) await publish(1);
      // Statistics reach pg_stat_user_tables when the relay's backend reports them (within
      // about a second of going idle): wait until its index scans of the ten passes show.
      await expect
        .poll(async () => (await outboxStats()).idxScans - before.idxScans, { timeout: 20_000 })
        .toBeGreaterThanOrEqual(10);
      const after = await outboxStats();
      // A sequential scan per pass would read ≥ 20,000 rows each time.
      expect(after.seqRead - before.seqRead).toBeLessThan(20_000);
    } finally {
      await relay.stop();
    }
  });
});
