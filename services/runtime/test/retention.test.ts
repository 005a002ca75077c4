/**
 * Retention of the outbox and the inbox against a real PostgreSQL: what is old enough
 * goes, in batches; what is not yet published, or still needed for deduplication, stays.
 */
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Database, openDatabase } from "../src/db.js";
import { createLogger } from "../src/logger.js";
import { INBOX_RETENTION_MS, OUTBOX_RETENTION_MS, startRetention } from "../src/retention.js";
import { createTestDatabase } from "../src/testing.js";

const migrationsFolder = fileURLToPath(new URL("./fixtures/migrations", import.meta.url));
const logger = createLogger("retention-test", "silent");

let database: Database<Record<string, never>>;
let drop: () => Promise<void>;

beforeAll(async () => {
  const t = await createTestDatabase("retention");
  drop = t.drop;
  database = await openDatabase({ url: t.url, schema: {}, migrationsFolder });
});

afterAll(async () => {
  await database?.close();
  await drop?.();
});

const hoursAgo = (h: number) => new Date(Date.now() - h * 3600_000);

async function outboxRow(subject: string, createdAt: Date, publishedAt: Date | null) {
  await database.sql`
    insert into outbox (id, subject, type, payload, created_at, published_at)
    values (${randomUUID()}, ${subject}, 't', '\\x00', ${createdAt.toISOString()}::timestamptz,
      ${publishedAt?.toISOString() ?? null}::timestamptz)`;
}

describe("retention of the event tables", () => {
  it("deletes published outbox rows older than a day and inbox rows older than the stream keeps messages", async () => {
    expect(OUTBOX_RETENTION_MS).toBe(24 * 3600_000);
    expect(INBOX_RETENTION_MS).toBe(8 * 24 * 3600_000);
    // More than one batch (5,000) of old published rows.
    await database.sql`
      insert into outbox (id, subject, type, payload, created_at, published_at)
      select gen_random_uuid(), 'old', 't', '\\x00', now() - interval '50 hours',
        now() - interval '49 hours'
      from generate_series(1, 5003)`;
    await outboxRow("recent", hoursAgo(2), hoursAgo(1));
    await outboxRow("never published", hoursAgo(72), null);
    for (const [consumer, days] of [
      ["c", 9],
      ["c", 7],
      ["c", 0],
    ] as const) {
      await database.sql`
        insert into inbox (consumer, event_id, processed_at)
        values (${consumer}, ${randomUUID()}, ${hoursAgo(days * 24).toISOString()}::timestamptz)`;
    }

    const retention = startRetention({ sql: database.sql, logger, everyMs: 3_600_000 });
    await retention.stop(); // the pass it starts with is done
    expect(await retention.runOnce()).toEqual({ outbox: 0, inbox: 0 }); // nothing left to do
    const subjects = await database.sql<{ subject: string; n: number }[]>`
      select subject, count(*)::int as n from outbox group by subject order by subject`;
    expect(subjects.map((r) => [r.subject, r.n])).toEqual([
      ["never published", 1],
      ["recent", 1],
    ]);
    const inbox = await database.sql<{ days: number }[]>`
      select round(extract(epoch from now() - processed_at) / 86400)::int as days
      from inbox order by processed_at`;
    expect(inbox.map((r) => r.days)).toEqual([7, 0]);
  });

  it("skips tables the database does not have", async () => {
    const t = await createTestDatabase("retention_bare");
    const bare = await openDatabase({ url: t.url, schema: {} });
    try {
      const retention = startRetention({ sql: bare.sql, logger, everyMs: 3_600_000 });
      await retention.stop();
      expect(await retention.runOnce()).toEqual({ outbox: 0, inbox: 0 });
    } finally {
      await bare.close();
      await t.drop();
    }
  });
});
