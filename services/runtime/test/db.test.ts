/**
 * The database helper against a real PostgreSQL (PG_URL, or the embedded server the
 * global setup starts when none is given).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { sql as dsql, eq } from "drizzle-orm";
import { integer, pgTable, serial, text } from "drizzle-orm/pg-core";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { processOnce } from "../src/bus.js";
import {
  commitWith,
  dropServiceDatabase,
  ensureServiceDatabase,
  onCommitted,
  openDatabase,
  pipelined,
  reusable,
  signalAfterCommit,
  TransactionRolledBack,
  transactionEndingWith,
} from "../src/db.js";
import type { Tx } from "../src/outbox.js";
import { startCountingRelay } from "../src/testing.js";

const adminUrl = process.env["PG_URL"] as string;
const name = `rt_${randomBytes(4).toString("hex")}`;
const migrationsFolder = fileURLToPath(new URL("./fixtures/migrations", import.meta.url));

afterAll(async () => {
  await dropServiceDatabase(adminUrl, name);
});

describe("database", () => {
  it("creates a database with its own role, and is idempotent", async () => {
    const url = await ensureServiceDatabase(adminUrl, name, "s3cret-pw");
    expect(await ensureServiceDatabase(adminUrl, name, "s3cret-pw")).toBe(url);
    expect(new URL(url).username).toBe(name);
    const own = postgres(url, { max: 1 });
    const [row] = await own`select current_user as who, current_database() as db`;
    expect(row).toEqual({ who: name, db: name });
    await own.end();
  });

  it("applies migrations once when several replicas start together", async () => {
    const url = await ensureServiceDatabase(adminUrl, name, "s3cret-pw");
    const replicas = await Promise.all(
      [1, 2, 3].map(() => openDatabase({ url, schema: {}, migrationsFolder, max: 2 })),
    );
    const first = replicas[0];
    if (first === undefined) throw new Error("no replica");
    await first.db.execute(dsql`insert into widgets (name) values ('a')`);
    const rows = await first.sql`select count(*)::int as n from drizzle.__drizzle_migrations`;
    expect(rows[0]?.["n"]).toBe(2); // both fixture migrations, once
    const widgets = await first.sql`select name from widgets`;
    expect(widgets.map((w) => w["name"])).toEqual(["a"]);
    await Promise.all(replicas.map((r) => r.close()));
  });

  describe("statements prepared, and BEGIN sent with the first statement (tunedPool)", () => {
    it("commits, rolls back on a throw or a failed statement (the caller gets that error), and keeps its one connection", async () => {
      const url = await ensureServiceDatabase(adminUrl, name, "s3cret-pw");
      // (Migrations hold one connection for their lock: a pool of one cannot run them.)
      await (await openDatabase({ url, schema: {}, migrationsFolder, max: 2 })).close();
      const { db, sql, close } = await openDatabase({ url, schema: {}, max: 1 });
      try {
        await sql`delete from widgets`;
        await db.transaction(async (tx) => {
          await tx.execute(dsql`insert into widgets (id, name) values (1, 'kept')`);
        });
        await expect(
          db.transaction(async (tx) => {
            await tx.execute(dsql`insert into widgets (id, name) values (2, 'thrown away')`);
            throw new Error("changed my mind");
          }),
        ).rejects.toThrow("changed my mind");
        await expect(
          db.transaction(async (tx) => {
            await tx.execute(dsql`insert into widgets (id, name) values (3, 'also away')`);
            await tx.execute(dsql`insert into widgets (id, name) values (1, 'duplicate')`);
          }),
        ).rejects.toMatchObject({ cause: { code: "23505" } });
        // A failed statement whose error the transaction caught still undoes it all.
        await expect(
          db.transaction(async (tx) => {
            await tx.execute(dsql`insert into widgets (id, name) values (7, 'undone')`);
            await tx
              .execute(dsql`insert into widgets (id, name) values (1, 'duplicate')`)
              .catch(() => undefined);
          }),
        ).rejects.toBeInstanceOf(TransactionRolledBack);
        // Pipelined: the first failure is the error, and nothing of the transaction stays.
        await expect(
          db.transaction((tx) =>
            pipelined(
              () => tx.execute(dsql`insert into widgets (id, name) values (8, 'before')`),
              () => tx.execute(dsql`insert into widgets (id, name) values (1, 'duplicate')`),
              () => tx.execute(dsql`insert into widgets (id, name) values (9, 'after')`),
            ),
          ),
        ).rejects.toMatchObject({ cause: { code: "23505" } });
        // Ending with COMMIT: a failed statement rolls it all back (COMMIT answers
        // ROLLBACK), the caller gets that statement's error, and the connection is fine.
        await expect(
          transactionEndingWith(db, (tx) => [
            () => tx.execute(dsql`insert into widgets (id, name) values (10, 'before')`),
            () => tx.execute(dsql`insert into widgets (id, name) values (1, 'duplicate')`),
            () => tx.execute(dsql`insert into widgets (id, name) values (11, 'after')`),
          ]),
        ).rejects.toMatchObject({ cause: { code: "23505" } });
        // An effect whose last statement fails leaves no inbox row: a redelivery retries it.
        const failing = randomUUID();
        await expect(
          processOnce(db, "rolled-back", failing, async (tx) =>
            commitWith(() => tx.execute(dsql`insert into widgets (id, name) values (1, 'dup')`)),
          ),
        ).rejects.toMatchObject({ cause: { code: "23505" } });
        const inbox = await sql`select 1 from inbox where event_id = ${failing}`;
        expect(inbox).toHaveLength(0);
        // Concurrent transactions on a pool of one take turns.
        await Promise.all(
          [4, 5, 6].map((id) =>
            db.transaction(async (tx) => {
              await tx.execute(dsql`insert into widgets (id, name) values (${id}, 'turn')`);
            }),
          ),
        );
        const rows = await sql`select id from widgets order by id`;
        expect(rows.map((r) => r["id"])).toEqual([1, 4, 5, 6]);
      } finally {
        await close();
      }
    });

    it("costs two client writes (BEGIN with the prepared statement, then COMMIT), not four", async () => {
      const relay = await startCountingRelay(
        await ensureServiceDatabase(adminUrl, name, "s3cret-pw"),
      );
      const { db, close } = await openDatabase({ url: relay.url, schema: {}, max: 1 });
      try {
        const insert = (name: string) =>
          db.transaction(async (tx) => {
            await tx.execute(dsql`insert into widgets (name) values (${name})`);
          });
        await insert("warm-up"); // connects, and prepares the statement on this connection
        relay.take();
        await insert("counted");
        expect(relay.take()).toBe(2);

        // Three statements pipelined: still one write with BEGIN, then COMMIT.
        let id = 100; // clear of the other tests' explicit ids
        const three = (names: string[]) =>
          db.transaction((tx) =>
            pipelined(
              ...names.map(
                (n) => () =>
                  tx.execute<{ name: string }>(
                    dsql`insert into widgets (id, name) values (${id++}, ${n}) returning name`,
                  ),
              ),
            ),
          );
        await three(["w1", "w2", "w3"]); // prepares on this connection
        relay.take();
        const results = await three(["p1", "p2", "p3"]);
        expect(relay.take()).toBe(2);
        expect(results.map((r) => [...r])).toEqual([
          [{ name: "p1" }],
          [{ name: "p2" }],
          [{ name: "p3" }],
        ]);

        // Ending with COMMIT: the whole transaction is one write.
        const atOnce = (names: string[]) =>
          transactionEndingWith(db, (tx) =>
            names.map(
              (n) => () =>
                tx.execute<{ name: string }>(
                  dsql`insert into widgets (id, name) values (${id++}, ${n}) returning name`,
                ),
            ),
          );
        await atOnce(["c1", "c2"]);
        relay.take();
        const ended = await atOnce(["c3", "c4"]);
        expect(relay.take()).toBe(1);
        expect(ended.map((r) => [...(r as Iterable<unknown>)])).toEqual([
          [{ name: "c3" }],
          [{ name: "c4" }],
        ]);

        // An event applied once with a prefetch and an effect ending with commitWith:
        // the inbox insert and the read in one write, the effect's statements and COMMIT
        // in the next.
        const seen: number[] = [];
        const apply = (eventId: string, name: string) =>
          processOnce(
            db,
            "write-count",
            eventId,
            async (tx, count) => {
              seen.push(Number(count));
              return commitWith(() =>
                tx.execute(dsql`insert into widgets (id, name) values (${id++}, ${name})`),
              );
            },
            async (tx: Tx) => {
              const rows = await tx.execute(dsql`select count(*)::int as n from widgets`);
              return (rows as unknown as { n: number }[])[0]?.n;
            },
          );
        await apply(randomUUID(), "e1");
        relay.take();
        const eventId = randomUUID();
        expect(await apply(eventId, "e2")).toBe(true);
        expect(relay.take()).toBe(2);
        expect(seen[1]).toBe((seen[0] ?? 0) + 1); // the prefetch saw the row e1 committed
        // Delivered again: the inbox says so, and the effect does not run.
        expect(await apply(eventId, "e2 again")).toBe(false);
        expect(seen).toHaveLength(2);
        const names = await db.execute<{ name: string }>(
          dsql`select name from widgets where name like 'e%' order by id`,
        );
        expect([...names].map((r) => r.name)).toEqual(["e1", "e2"]);
      } finally {
        await close();
        await relay.close();
      }
    });

    it("signals a topic to the pool's listeners after COMMIT, never for a rollback or outside a transaction", async () => {
      const url = await ensureServiceDatabase(adminUrl, name, "s3cret-pw");
      const one = await openDatabase({ url, schema: {}, max: 2 });
      const other = await openDatabase({ url, schema: {}, max: 2 });
      const heard: string[] = [];
      let committedWhenHeard: unknown;
      const stop = onCommitted(one.sql, "widgets", () => {
        heard.push("widgets");
        // The listener runs once COMMIT has answered: another connection sees the row.
        committedWhenHeard = other.sql`select count(*)::int as n from widgets where name = 'signalled'`;
      });
      onCommitted(one.sql, "elsewhere", () => heard.push("elsewhere"));
      try {
        await one.sql`delete from widgets`;
        expect(signalAfterCommit("widgets")).toBe(false); // not in a transaction
        await one.db.transaction(async (tx) => {
          await tx.execute(dsql`insert into widgets (name) values ('signalled')`);
          expect(signalAfterCommit("widgets")).toBe(true);
          signalAfterCommit("widgets"); // twice in one transaction: heard once
          expect(heard).toEqual([]); // not before COMMIT
        });
        expect(heard).toEqual(["widgets"]);
        expect(await committedWhenHeard).toEqual([{ n: 1 }]);
        await expect(
          one.db.transaction(async () => {
            signalAfterCommit("widgets");
            throw new Error("rolled back");
          }),
        ).rejects.toThrow("rolled back");
        // Another pool's transaction signals its own listeners only.
        await other.db.transaction(async () => {
          signalAfterCommit("widgets");
        });
        stop();
        await one.db.transaction(async () => {
          signalAfterCommit("widgets");
        });
        expect(heard).toEqual(["widgets"]);
      } finally {
        await one.close();
        await other.close();
      }
    });
  });

  describe("reusable statements", () => {
    const widgets = pgTable("widgets", {
      id: serial("id").primaryKey(),
      name: text("name").notNull(),
    });
    // A column the statement maps (camelCase here, snake_case in SQL).
    const renamed = pgTable("widgets", { widgetId: integer("id").notNull(), label: text("name") });

    it("are built once and run on the pool or inside any transaction, mapped as drizzle maps them", async () => {
      const url = await ensureServiceDatabase(adminUrl, name, "s3cret-pw");
      await (await openDatabase({ url, schema: {}, migrationsFolder, max: 2 })).close();
      const one = await openDatabase({ url, schema: {}, max: 2 });
      const two = await openDatabase({ url, schema: {}, max: 2 });
      let builds = 0;
      const insert = reusable((db) => {
        builds++;
        return db
          .insert(widgets)
          .values({ id: dsql.placeholder("id"), name: dsql.placeholder("name") })
          .returning()
          .prepare("test_insert_widget");
      });
      const byId = reusable((db) =>
        db
          .select()
          .from(renamed)
          .where(eq(renamed.widgetId, dsql.placeholder("id")))
          .prepare("test_widget_by_id"),
      );
      const rename = reusable(
        () =>
          dsql`update widgets set name = ${dsql.placeholder("name")} where id = ${dsql.placeholder("id")} returning id, name`,
      );
      try {
        await one.sql`delete from widgets`;
        expect(await insert(one.db, { id: 11, name: "pool" })).toEqual([{ id: 11, name: "pool" }]);
        await one.db.transaction(async (tx) => {
          await insert(tx, { id: 12, name: "committed" });
          // Inside the transaction: it sees its own row.
          expect(await byId(tx, { id: 12 })).toEqual([{ widgetId: 12, label: "committed" }]);
        });
        // Run inside the transaction, not on the pool: a rollback takes it back.
        await expect(
          two.db.transaction(async (tx) => {
            await insert(tx, { id: 13, name: "rolled back" });
            throw new Error("changed my mind");
          }),
        ).rejects.toThrow("changed my mind");
        expect(await rename(two.db, { id: 11, name: "renamed" })).toEqual([
          { id: 11, name: "renamed" },
        ]);
        const rows = await one.sql`select id, name from widgets order by id`;
        expect(rows.map((r) => [r["id"], r["name"]])).toEqual([
          [11, "renamed"],
          [12, "committed"],
        ]);
        expect(await byId(two.db, { id: 13 })).toEqual([]);
        expect(builds).toBe(1);
        await expect(insert(one.db, { id: 14 })).rejects.toThrow('No value for placeholder "name"');
      } finally {
        await one.close();
        await two.close();
      }
    });
  });
});
