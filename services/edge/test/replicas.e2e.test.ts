/**
 * End to end with replicas: the real `npm start` with REPLICAS=2 (two processes of
 * every domain service and of the edge, real PostgreSQL, the test's own nats-server,
 * started by stack-harness.ts). Checks that the replicas migrate their fresh databases together without a
 * crash, that the saga settles while one replica each of orders, payments and catalog
 * is SIGKILLed mid-load, and that a rolling restart (SIGTERM to every replica of every
 * service, one replica of each at a time) under load fails no client request.
 */
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, type Stack, startStack } from "./stack-harness.js";

const DOMAIN = ["identity", "catalog", "orders", "payments", "notifications"];

interface StackProcess {
  service: string;
  replica: number;
  pid: number;
  port: number;
  adminPort: number;
  ready: boolean;
}

let stack: Stack;
let dataDir: string;
let base: string;
let edgePort: number;
const dbs: postgres.Sql[] = [];

/** A service's own database, as the launcher created it (closed after the file). */
function serviceDb(name: string) {
  const db = stack.serviceDb(name);
  dbs.push(db);
  return db;
}

const processes = () =>
  (JSON.parse(readFileSync(join(dataDir, "stack.json"), "utf8")) as { services: StackProcess[] })
    .services;
const find = (service: string, replica: number) =>
  processes().find((p) => p.service === service && p.replica === replica);

beforeAll(async () => {
  stack = await startStack({
    env: {
      REPLICAS: "2",
      ADMIN_PORT_BASE: "0",
      NO_COLOR: "1",
      RATE_LIMIT_RPS: "0", // per-replica buckets; this test measures failures, not limits
    },
    readyTimeoutMs: 150_000,
  });
  ({ dataDir, base, edgePort } = stack);
}, 180_000);

afterAll(async () => {
  await Promise.all(dbs.map((db) => db.end()));
  await stack?.stop();
}, 60_000);

type Json = Record<string, unknown>;

/** One HTTP request to the edge; a connection error is a status 0 result, not a throw. */
async function call(
  path: string,
  init: { body?: unknown; token?: string; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers["authorization"] = `Bearer ${init.token}`;
  if (init.body !== undefined) headers["content-type"] = "application/json";
  try {
    const res = await fetch(`${base}${path}`, {
      method: init.body === undefined ? "GET" : "POST",
      headers,
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    const text = await res.text();
    let json: Json = {};
    try {
      json = JSON.parse(text);
    } catch {
      json = { text };
    }
    return { status: res.status, json, text };
  } catch (err) {
    return { status: 0, json: {} as Json, text: String((err as Error).cause ?? err) };
  }
}

async function register() {
  const email = `r-${randomUUID().slice(0, 8)}@example.com`;
  const password = "correct horse battery";
  const reg = await call("/v1/users", { body: { email, password, displayName: "Replica" } });
  expect(reg.status, reg.text).toBe(200);
  const login = await call("/v1/auth/login", { body: { email, password } });
  expect(login.status, login.text).toBe(200);
  return { token: login.json["accessToken"] as string };
}

/** Waits until (service, replica) runs as a process other than `oldPid` and is ready. */
async function replaced(service: string, replica: number, oldPid: number) {
  await expect
    .poll(
      () => {
        const p = find(service, replica);
        return p !== undefined && p.pid !== oldPid && p.ready;
      },
      { timeout: 60_000, interval: 100 },
    )
    .toBe(true);
}

/** Every placed order reaches CONFIRMED or CANCELLED; captures, stock and outboxes add up. */
async function expectSettled(placed: string[], initial: Map<string, number>, since: Date) {
  const ordersDb = serviceDb("orders");
  const paymentsDb = serviceDb("payments");
  const catalogDb = serviceDb("catalog");
  await expect
    .poll(
      async () =>
        (
          await ordersDb`select count(*)::int as n from orders
            where id = any(${placed}::uuid[]) and status not in ('CONFIRMED', 'CANCELLED')`
        )[0]?.["n"],
      { timeout: 120_000, interval: 500 },
    )
    .toBe(0);
  const orders = await ordersDb`select id, status from orders where id = any(${placed}::uuid[])`;
  expect(orders).toHaveLength(placed.length);
  const payments =
    await paymentsDb`select order_id from payments where status = 'CAPTURED' and order_id = any(${placed}::uuid[])`;
  const captured = payments.map((p) => p["order_id"] as string);
  expect(new Set(captured).size).toBe(captured.length); // nothing charged twice
  const confirmed = orders.filter((o) => o["status"] === "CONFIRMED").map((o) => o["id"]);
  expect(new Set(captured)).toEqual(new Set(confirmed));
  const sold = await ordersDb`
    select i.product_id, sum(i.quantity)::int as n from order_items i join orders o on o.id = i.order_id
    where o.status = 'CONFIRMED' and o.id = any(${placed}::uuid[]) group by i.product_id`;
  // A replica SIGKILLed between the catalog's commit of a reservation and the order's
  // own commit leaves a reservation no order owns (see docs/replicas.md): count it.
  const held = await catalogDb`
    select l.product_id, l.quantity, r.order_id from reservation_lines l
    join reservations r on r.order_id = l.order_id
    where r.status <> 'released' and r.created_at >= ${since}
      and l.product_id = any(${[...initial.keys()]}::uuid[])`;
  const known = new Set(
    (
      await ordersDb`select id from orders where id = any(${held.map((h) => h["order_id"])}::uuid[])`
    ).map((o) => o["id"] as string),
  );
  const orphans = held.filter((h) => !known.has(h["order_id"] as string));
  if (orphans.length > 0) console.log(`reservations without an order: ${orphans.length}`);
  const now =
    await catalogDb`select id, stock from products where id = any(${[...initial.keys()]}::uuid[])`;
  for (const p of now) {
    const s = Number(sold.find((r) => r["product_id"] === p["id"])?.["n"] ?? 0);
    const o = orphans
      .filter((h) => h["product_id"] === p["id"])
      .reduce((n, h) => n + Number(h["quantity"]), 0);
    expect(Number(p["stock"]) + s + o, `product ${p["id"]}`).toBe(initial.get(p["id"] as string));
  }
  for (const name of ["orders", "payments", "catalog"]) {
    const db = serviceDb(name);
    await expect
      .poll(
        async () =>
          (await db`select count(*)::int as n from outbox where published_at is null`)[0]?.["n"],
        { timeout: 30_000 },
      )
      .toBe(0);
  }
  return { confirmed: confirmed.length, orphans: orphans.length };
}

/** The catalog database's clock, to tell this test's reservations from earlier ones. */
async function dbNow(): Promise<Date> {
  const [row] = await serviceDb("catalog")`select now() as now`;
  return row?.["now"] as Date;
}

/** Stock of the given SKUs, by product id. */
async function stockOf(where: string) {
  const rows = await serviceDb("catalog").unsafe(
    `select id, stock from products where active and ${where} order by sku`,
  );
  return new Map(rows.map((r) => [r["id"] as string, Number(r["stock"])]));
}

describe("npm start with REPLICAS=2", () => {
  it("runs two processes of every service; the edge's share its port; each has its own admin port", () => {
    const all = processes();
    expect(all).toHaveLength(12);
    for (const service of [...DOMAIN, "edge"]) {
      const mine = all.filter((p) => p.service === service);
      expect(mine.map((p) => p.replica).sort()).toEqual([0, 1]);
      expect(mine.every((p) => p.ready)).toBe(true);
    }
    const grpcPorts = all.filter((p) => p.service !== "edge").map((p) => p.port);
    expect(new Set(grpcPorts).size).toBe(10);
    expect(all.filter((p) => p.service === "edge").map((p) => p.port)).toEqual([
      edgePort,
      edgePort,
    ]);
    expect(new Set(all.map((p) => p.adminPort)).size).toBe(12);
  });

  it("the two replicas of each service migrated its empty database once, without a crash", async () => {
    for (const name of DOMAIN) {
      const journal = JSON.parse(
        readFileSync(
          join(repoRoot, "services", name, "src/db/migrations/meta/_journal.json"),
          "utf8",
        ),
      ) as { entries: unknown[] };
      const files = readdirSync(join(repoRoot, "services", name, "src/db/migrations"));
      expect(files.filter((f) => f.endsWith(".sql"))).toHaveLength(journal.entries.length);
      const [row] = await serviceDb(
        name,
      )`select count(*)::int as n from drizzle.__drizzle_migrations`;
      expect(row?.["n"], name).toBe(journal.entries.length);
    }
    // No replica exited while they started together.
    expect(stack.output()).not.toMatch(/exited \(|failed to start/);
  });
});

describe("the saga with replicas under faults", () => {
  it("settles 100 orders while one replica each of orders, payments and catalog is SIGKILLed", async () => {
    const users = await Promise.all([1, 2, 3, 4].map(() => register()));
    const since = await dbNow();
    const initial = await stockOf("stock >= 300");
    const productIds = [...initial.keys()];
    const kills: [number, string][] = [
      [20, "orders"],
      [45, "payments"],
      [70, "catalog"],
    ];
    const killed: { service: string; pid: number }[] = [];
    const placed = new Set<string>();
    const failures: string[] = [];
    let retries = 0;
    let next = 0;
    const N = 100;
    const worker = async () => {
      while (next < N) {
        const i = next++;
        const kill = kills.find(([at]) => at === i);
        if (kill) {
          const victim = find(kill[1], 0) as StackProcess;
          process.kill(victim.pid, "SIGKILL");
          killed.push({ service: victim.service, pid: victim.pid });
        }
        const body = {
          items: [{ productId: productIds[i % productIds.length], quantity: 1 + (i % 3) }],
          paymentToken: i % 10 === 0 ? "tok_chargeDeclined" : "tok_visa",
          idempotencyKey: `kill-${i}`,
        };
        const token = users[i % users.length]?.token as string;
        // A replica killed mid-call leaves the outcome unknown (503/504, or the
        // connection drops): the client retries with the same idempotency key, which
        // returns the order if it was placed. The budget (about 7 s) outlasts the edge's
        // circuit breaker, which is per service, not per replica (docs/replicas.md).
        for (let attempt = 1; ; attempt++) {
          const res = await call("/v1/orders", { token, body });
          if (res.status === 200) {
            placed.add(res.json["id"] as string);
            break;
          }
          const transient = res.status === 0 || res.status >= 500;
          if (!transient || attempt === 8) {
            failures.push(`${res.status} ${res.text}`);
            break;
          }
          retries++;
          await new Promise((r) => setTimeout(r, 200 * attempt));
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    console.log(`fault test: ${retries} client retries with the same idempotency key`);
    expect(failures).toEqual([]);
    expect(placed.size).toBe(N);
    const { confirmed } = await expectSettled([...placed], initial, since);
    expect(confirmed).toBeGreaterThanOrEqual(N * 0.85);
    // The launcher brought every killed replica back.
    for (const k of killed) await replaced(k.service, 0, k.pid);
  }, 300_000);
});

describe("rolling restart", () => {
  it("SIGTERMs every replica of every service, one replica of each at a time, under load: no request fails", async () => {
    const user = await register();
    const since = await dbNow();
    const initial = await stockOf("sku = 'BENCH-STICKER-PACK'");
    const [productId] = [...initial.keys()];
    expect(productId).toBeDefined();
    const browse = [...(await stockOf("true")).keys()];
    const failures: string[] = [];
    const placed: string[] = [];
    let reads = 0;
    let restarting = true;
    const t0 = Date.now();
    const busy = () => restarting || Date.now() - t0 < 20_000;
    let resent = 0;
    const reader = async () => {
      for (let i = 0; busy(); i++) {
        // no-cache: every read goes through to a catalog replica, not the edge's copy.
        const read = () =>
          call(`/v1/products/${browse[i % browse.length]}`, {
            headers: { "cache-control": "no-cache" },
          });
        let res = await read();
        // A connection reset with no answer (status 0): the request raced the close of a
        // keep-alive connection, or sat in the accept queue of an edge replica's shared
        // (SO_REUSEPORT) socket as it closed. An HTTP client may send an idempotent
        // request again on a new connection (RFC 9110, 9.2.2), and browsers do: once.
        // An HTTP error answer is never resent, and POSTs are never resent at all.
        if (res.status === 0) {
          resent++;
          res = await read();
        }
        if (res.status === 200) reads++;
        else failures.push(`GET ${res.status} ${res.text}`);
      }
    };
    const buyer = async (w: number) => {
      for (let i = 0; busy(); i++) {
        const res = await call("/v1/orders", {
          token: user.token,
          body: {
            items: [{ productId, quantity: 1 }],
            paymentToken: "tok_visa",
            idempotencyKey: `roll-${w}-${i}`,
          },
        });
        if (res.status === 200) placed.push(res.json["id"] as string);
        else failures.push(`POST ${res.status} ${res.text}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const load = Promise.all([
      ...Array.from({ length: 6 }, reader),
      ...Array.from({ length: 2 }, (_, w) => buyer(w)),
    ]);
    // Replica 0 of every service, then replica 1: each service always keeps one replica
    // serving while its other one drains, exits and is started again.
    for (const replica of [0, 1]) {
      const t = Date.now();
      const wave = [...DOMAIN, "edge"].map((service) => find(service, replica) as StackProcess);
      for (const p of wave) process.kill(p.pid, "SIGTERM");
      for (const p of wave) await replaced(p.service, replica, p.pid);
      console.log(`replica ${replica} of every service replaced in ${Date.now() - t} ms`);
      // Clients reconnect to the new processes (grpc-js backoff is capped at 2 s).
      await new Promise((r) => setTimeout(r, 2_500));
    }
    restarting = false;
    await load;
    console.log(
      `rolling restart: ${reads} reads (${resent} resent after a reset connection), ${placed.length} orders in ${Date.now() - t0} ms`,
    );
    expect(failures).toEqual([]);
    expect(reads).toBeGreaterThan(0);
    expect(placed.length).toBeGreaterThan(0);
    // A graceful restart never leaves a reservation behind.
    expect((await expectSettled(placed, initial, since)).orphans).toBe(0);
  }, 420_000);
});
