/**
 * commitTogether against a real PostgreSQL (through a relay that counts writes and
 * COMMITs): a call alone is one autocommit statement; calls made while one is in flight
 * share one transaction, in the given order, each in its own call context; a call whose
 * statement fails fails alone and the others are applied once.
 */
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commitTogether } from "../src/commit-together.js";
import { type CallContext, currentCall, runWithCall } from "../src/context.js";
import { type Database, openDatabase } from "../src/db.js";
import { createLogger } from "../src/logger.js";
import type { Tx } from "../src/outbox.js";
import { createTestDatabase, startCountingRelay } from "../src/testing.js";

const logger = createLogger("commit-together-test", "silent");

let url: string;
let drop: () => Promise<void>;

beforeAll(async () => {
  const t = await createTestDatabase("together");
  url = t.url;
  drop = t.drop;
  const setup = await openDatabase({ url, schema: {} });
  await setup.sql`create table stock (k text primary key, n int not null check (n >= 0))`;
  await setup.sql`create sequence taken_seq`;
  await setup.close();
});

afterAll(async () => {
  await drop?.();
});

type Db = Database<Record<string, never>>;

/** Takes one unit of `k`: the units left and the order in which it was taken. */
function takeOne(session: Tx, k: string) {
  return session
    .execute(
      sql`update stock set n = n - 1 where k = ${k} returning n, nextval('taken_seq')::int as seq`,
    )
    .then((r) => {
      const [row] = r as unknown as { n: number; seq: number }[];
      if (row === undefined) throw new Error(`no ${k}`);
      return { k, n: row.n, seq: row.seq, requestId: currentCall()?.requestId };
    });
}

function callContext(requestId: string): CallContext {
  return {
    method: "test",
    deadline: undefined,
    signal: new AbortController().signal,
    requestId,
    logger,
    header: () => undefined,
  };
}

async function withRelay<T>(
  fn: (database: Db, relay: { take(): number; commits(): number }) => Promise<T>,
) {
  const relay = await startCountingRelay(url);
  // One connection, so that counted writes do not depend on which one a call gets.
  const database = await openDatabase({ url: relay.url, schema: {}, max: 1 });
  try {
    return await fn(database, relay);
  } finally {
    await database.close();
    await relay.close();
  }
}

describe("commitTogether", () => {
  it("runs a call alone as one statement when nothing is in flight", async () => {
    await withRelay(async (database, relay) => {
      await database.sql`insert into stock values ('alone', 5)`;
      const take = commitTogether(database.db, takeOne);
      expect(await take("alone")).toMatchObject({ n: 4 }); // (prepares the statement)
      relay.take();
      relay.commits();
      expect(await take("alone")).toMatchObject({ n: 3 });
      expect(relay.take()).toBe(1);
      expect(relay.commits()).toBe(0);
      expect(await take("alone")).toMatchObject({ n: 2 });
      expect(relay.take()).toBe(1);
    });
  });

  it("commits the calls that waited together, each once, in its own call context", async () => {
    await withRelay(async (database, relay) => {
      await database.sql`insert into stock values ('hot', 101)`;
      const take = commitTogether(database.db, takeOne);
      await take("hot"); // (prepares the statement)
      await new Promise((r) => setImmediate(r)); // (and is no longer in flight)
      relay.take();
      relay.commits();
      const taken = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          runWithCall(callContext(`req-${i}`), () => take("hot")),
        ),
      );
      // The first goes alone (autocommit); the 19 that came meanwhile share one COMMIT.
      expect(relay.commits()).toBe(1);
      expect(relay.take()).toBe(2);
      expect(taken.map((t) => t.n).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 20 }, (_, i) => 80 + i),
      );
      expect(taken.map((t) => t.requestId)).toEqual(taken.map((_, i) => `req-${i}`));
      const [row] = await database.sql<{ n: number }[]>`select n from stock where k = 'hot'`;
      expect(row?.n).toBe(80);
    });
  });

  it("sends a batch in the order given", async () => {
    await withRelay(async (database) => {
      const keys = ["o-e", "o-b", "o-d", "o-a", "o-c"];
      for (const k of keys) await database.sql`insert into stock values (${k}, 1)`;
      await database.sql`insert into stock values ('o-first', 1)`;
      const take = commitTogether(database.db, takeOne, (k: string) => k);
      const first = take("o-first");
      const rest = await Promise.all(keys.map((k) => take(k)));
      await first;
      const bySeq = [...rest].sort((a, b) => a.seq - b.seq).map((t) => t.k);
      expect(bySeq).toEqual([...keys].sort());
    });
  });

  it("a call whose statement fails fails alone; the others are applied once", async () => {
    await withRelay(async (database, relay) => {
      const keys = Array.from({ length: 8 }, (_, i) => `iso-${i}`);
      // iso-5 has nothing left: its update breaks the check and fails the batch.
      for (const [i, k] of keys.entries())
        await database.sql`insert into stock values (${k}, ${i === 5 ? 0 : 1})`;
      const take = commitTogether(database.db, takeOne);
      relay.commits();
      const results = await Promise.allSettled(keys.map((k) => take(k)));
      expect(results.map((r) => r.status)).toEqual(
        keys.map((_, i) => (i === 5 ? "rejected" : "fulfilled")),
      );
      expect((results[5] as PromiseRejectedResult).reason).toMatchObject({
        cause: { constraint_name: "stock_n_check" },
      });
      // The batch of seven was tried (one COMMIT, answered with ROLLBACK), then each alone.
      expect(relay.commits()).toBe(1);
      const left = await database.sql<{ n: number }[]>`
        select n from stock where k like 'iso-%' order by k`;
      expect(left.map((r) => r.n)).toEqual(keys.map(() => 0));
      // The server keeps serving: the next call goes through.
      await database.sql`update stock set n = 1 where k = 'iso-5'`;
      expect(await take("iso-5")).toMatchObject({ n: 0 });
    });
  });
});
