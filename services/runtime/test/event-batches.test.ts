/**
 * Events applied in batches (processOnce with a key) against a real PostgreSQL: fewer
 * transactions, the same outcome as one transaction per event — never two events of a
 * key together, each effect in its own call context, a failing event failing alone.
 */
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { processOnce } from "../src/bus.js";
import { type CallContext, currentCall, runWithCall } from "../src/context.js";
import { commitWith, type Database, openDatabase } from "../src/db.js";
import { createLogger } from "../src/logger.js";
import type { Tx } from "../src/outbox.js";
import { createTestDatabase, startCountingRelay } from "../src/testing.js";

const migrationsFolder = fileURLToPath(new URL("./fixtures/migrations", import.meta.url));
const logger = createLogger("event-batches-test", "silent");

let url: string;
let drop: () => Promise<void>;

beforeAll(async () => {
  const t = await createTestDatabase("batches");
  url = t.url;
  drop = t.drop;
  const setup = await openDatabase({ url, schema: {}, migrationsFolder });
  await setup.sql`create table counters (k text primary key, n int not null)`;
  await setup.close();
});

afterAll(async () => {
  await drop?.();
});

const rows = (r: unknown) => r as Record<string, unknown>[];

/** Adds one to counter `k`, from the value its prefetch read: wrong if two run together. */
function increment(db: Database<Record<string, never>>["db"], k: string, seen?: string[]) {
  return processOnce(
    db,
    "batch-test",
    randomUUID(),
    async (tx, n: number) => {
      seen?.push(currentCall()?.requestId ?? "none");
      return commitWith(() => tx.execute(sql`update counters set n = ${n + 1} where k = ${k}`));
    },
    async (tx: Tx) =>
      Number(
        rows(await tx.execute(sql`select n from counters where k = ${k} for update`))[0]?.["n"],
      ),
    k,
  );
}

function callContext(requestId: string): CallContext {
  return {
    method: "event:test",
    deadline: undefined,
    signal: new AbortController().signal,
    requestId,
    logger,
    header: () => undefined,
  };
}

describe("events applied in batches", () => {
  it("applies many events in a few transactions, each once, in its own call context", async () => {
    const relay = await startCountingRelay(url);
    const database = await openDatabase({ url: relay.url, schema: {}, max: 2 });
    try {
      const keys = Array.from({ length: 20 }, (_, i) => `many-${i}`);
      for (const k of keys) await database.sql`insert into counters (k, n) values (${k}, 0)`;
      relay.commits();
      const seen: string[] = [];
      const applied = await Promise.all(
        keys.map((k) =>
          runWithCall(callContext(`req-${k}`), () => increment(database.db, k, seen)),
        ),
      );
      const commits = relay.commits();
      expect(applied).toEqual(keys.map(() => true));
      // One transaction per event would be 20 COMMITs: the first goes alone (nothing to
      // batch it with yet), and the 19 that arrive while it is in flight go together.
      expect(commits).toBe(2);
      expect(seen.sort()).toEqual(keys.map((k) => `req-${k}`).sort());
      const counters = await database.sql<{ n: number }[]>`
        select n from counters where k like 'many-%'`;
      expect(counters.map((c) => c.n)).toEqual(keys.map(() => 1));
    } finally {
      await database.close();
      await relay.close();
    }
  });

  it("never applies two events of one key together: each sees the last one's commit", async () => {
    const database = await openDatabase({ url, schema: {}, max: 4 });
    try {
      await database.sql`insert into counters (k, n) values ('hot', 0), ('cold', 0)`;
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => increment(database.db, i % 3 === 0 ? "cold" : "hot")),
      );
      const counters = await database.sql<{ k: string; n: number }[]>`
        select k, n from counters where k in ('hot', 'cold') order by k`;
      expect(counters.map((c) => [c.k, c.n])).toEqual([
        ["cold", 10],
        ["hot", 20],
      ]);
    } finally {
      await database.close();
    }
  });

  it("a failing event fails alone: the others of its batch are applied, once", async () => {
    const database = await openDatabase({ url, schema: {}, max: 2 });
    try {
      const keys = Array.from({ length: 8 }, (_, i) => `iso-${i}`);
      for (const k of keys) await database.sql`insert into counters (k, n) values (${k}, 0)`;
      const failing = randomUUID();
      const results = await Promise.allSettled(
        keys.map((k, i) =>
          i === 5
            ? processOnce(
                database.db,
                "batch-test",
                failing,
                async () => {
                  throw new Error("this one cannot be applied");
                },
                undefined,
                k,
              )
            : increment(database.db, k),
        ),
      );
      expect(results.map((r) => r.status)).toEqual(
        keys.map((_, i) => (i === 5 ? "rejected" : "fulfilled")),
      );
      expect((results[5] as PromiseRejectedResult).reason).toMatchObject({
        message: "this one cannot be applied",
      });
      const counters = await database.sql<{ k: string; n: number }[]>`
        select k, n from counters where k like 'iso-%' order by k`;
      expect(counters.map((c) => c.n)).toEqual(keys.map((_, i) => (i === 5 ? 0 : 1)));
      const inbox = await database.sql`select 1 from inbox where event_id = ${failing}`;
      expect(inbox).toHaveLength(0);
    } finally {
      await database.close();
    }
  });
});
