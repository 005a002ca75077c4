/**
 * The database helper against a real PostgreSQL (PG_URL, or the embedded server the
 * global setup starts when none is given).
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { sql as dsql } from "drizzle-orm";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { dropServiceDatabase, ensureServiceDatabase, openDatabase } from "../src/db.js";

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
});
