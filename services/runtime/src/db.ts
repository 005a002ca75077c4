/**
 * Databases: drizzle-orm over postgres.js, always. Migrations are drizzle-kit SQL
 * files committed beside each service's schema, applied at start-up under a
 * Postgres advisory lock so that replicas starting together do not race.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import { is, SQL } from "drizzle-orm";
import { PgDialect, type PgSession } from "drizzle-orm/pg-core";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import type { Logger } from "./logger.js";
import { watchDbPool } from "./metrics.js";
import type { Tx } from "./outbox.js";

export type Db<TSchema extends Record<string, unknown> = Record<string, never>> =
  PostgresJsDatabase<TSchema>;

export interface Database<TSchema extends Record<string, unknown>> {
  db: Db<TSchema>;
  sql: postgres.Sql;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions<TSchema extends Record<string, unknown>> {
  url: string;
  schema: TSchema;
  /** Folder of drizzle-kit SQL migrations; applied before the database is returned. */
  migrationsFolder?: string;
  /** Pool size. Default 10. */
  max?: number;
  logger?: Logger;
}

// Any constant works; it only has to be the same for every replica of a service.
const MIGRATION_LOCK = 0x5d0b_3e5a;

export async function openDatabase<TSchema extends Record<string, unknown>>(
  options: OpenDatabaseOptions<TSchema>,
): Promise<Database<TSchema>> {
  // Unique per pool: the pool metrics find this pool's connections in pg_stat_activity.
  const applicationName = `shopmesh-${randomBytes(4).toString("hex")}`;
  const sql = postgres(options.url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connection: { application_name: applicationName },
  });
  const unwatch = watchDbPool(sql, applicationName, options.url);
  const tuned = tunedPool(sql);
  const db = drizzle(tuned, { schema: options.schema });
  if (options.migrationsFolder !== undefined) {
    await migrateWithLock(sql, db, options.migrationsFolder, options.logger);
  }
  return {
    db,
    // Tuned too: the outbox relay's transactions (`sql.begin`) save their round trip.
    sql: tuned,
    close: async () => {
      await unwatch();
      await sql.end({ timeout: 5 });
    },
  };
}

/**
 * `sql` as drizzle (and the outbox relay) should drive it, round trips cheaper per statement and per
 * transaction (the saga runs ≈ 14 transactions and ≈ 45 statements per order):
 *
 * - **Every statement is prepared** (`unsafe(…, { prepare: true })`), as postgres.js does
 *   for its own tagged queries: drizzle asks for a named statement only when a query is
 *   built with `.prepare(name)`, and postgres.js sends any other statement with
 *   parameters as Parse + Describe, waits for the answer, then sends Bind + Execute — two
 *   round trips each time. Prepared, it is one round trip after its first use on a
 *   connection. The statements are the finite set of shapes our code builds.
 * - **BEGIN travels with the first statement.** postgres.js's `begin(fn)` (what drizzle's
 *   `db.transaction` calls) waits for BEGIN's answer before running `fn`. Here the
 *   transaction runs on a reserved connection, whose queries postgres.js pipelines in
 *   order: BEGIN is written, the first statement follows in the same socket write, COMMIT
 *   after `fn` settles, ROLLBACK when it throws (the caller gets `fn`'s error). The
 *   connection returns to the pool only once COMMIT or ROLLBACK answered; one lost
 *   mid-transaction is postgres.js's to reopen, never handed out as it is. When `fn`
 *   caught the error of a statement, COMMIT finds the transaction aborted and the caller
 *   gets TransactionRolledBack (postgres.js's `begin` throws that statement's error).
 *   Savepoints (nested transactions) are not supported: nothing here uses them.
 * - **Signals after COMMIT.** A statement run inside `fn` can ask for a topic to be
 *   signalled once the transaction has committed (`signalAfterCommit`); the listeners the
 *   pool has for it (`onCommitted`) then run. The outbox relay is woken this way.
 */
export function tunedPool(sql: postgres.Sql): postgres.Sql {
  let self: postgres.Sql | undefined;
  const begin = async (...args: unknown[]) => {
    const fn = args[args.length - 1] as (tx: postgres.ReservedSql) => Promise<unknown>;
    if (args.length !== 1 || typeof fn !== "function")
      throw new Error("begin(fn): transaction options are not supported here");
    const conn = await sql.reserve();
    let reusable = false;
    try {
      const opened = conn.unsafe("begin").execute();
      const signals = new Set<string>();
      let result: unknown;
      try {
        result = await committing.run(signals, () => fn(preparing(conn)));
        if (result instanceof CommitWith) {
          // COMMIT is written right behind the statements (`transactionEndingWith`).
          const ending = conn.unsafe("commit").execute();
          const [statements, ended] = await Promise.allSettled([result.results, ending]);
          await opened;
          if (statements.status === "rejected") throw statements.reason;
          if (ended.status === "rejected") throw ended.reason;
          result = statements.value;
          if (ended.value.command === "ROLLBACK") {
            reusable = true;
            throw new TransactionRolledBack();
          }
        } else {
          await opened;
          // A statement that failed inside `fn` (and was caught there) left the
          // transaction aborted: PostgreSQL answers COMMIT with ROLLBACK, and so do we.
          const ended = await conn.unsafe("commit");
          if (ended.command === "ROLLBACK") {
            reusable = true;
            throw new TransactionRolledBack();
          }
        }
      } catch (err) {
        if (err instanceof TransactionRolledBack) throw err;
        await opened.catch(() => undefined);
        // The caller needs `err`, not a failed ROLLBACK's error (a lost connection).
        await conn.unsafe("rollback").then(
          () => {
            reusable = true;
          },
          () => undefined,
        );
        throw err;
      }
      reusable = true;
      if (signals.size > 0 && self !== undefined) notifyCommitted(self, signals);
      return result;
    } finally {
      if (reusable) conn.release();
    }
  };
  self = preparing(sql, begin);
  return self;
}

/**
 * A statement drizzle builds once and any session runs — the pool, or a transaction's
 * connection. drizzle builds a query's SQL again on every call (a walk over every chunk
 * with `is()` checks: 8–12 % of a saga service's CPU), and a query prepared with
 * `.prepare(name)` keeps its SQL but stays bound to the session it was built on. `build`
 * returns the query prepared, or a raw `sql` template, with `sql.placeholder(name)`
 * wherever a value changes; the runner takes the session and the values:
 *
 *   const lockOrder = reusable((db) =>
 *     db.select().from(orders).where(eq(orders.id, sql.placeholder("id"))).for("update")
 *       .prepare("lock_order"));
 *   const [order] = await lockOrder(tx, { id });
 *
 * The prepared query itself runs, with the session's connection in place of the one it
 * was built on, so its rows are mapped as drizzle maps them (a raw template's rows come
 * back as postgres.js returns them, as with `db.execute`). Placeholder values go through
 * the column's encoder, as values given to `.values()` or `.set()` do.
 */
export function reusable<R>(
  build: (db: Tx) => PreparedStatement<R> | SQL,
): (session: Tx, values: Record<string, unknown>) => Promise<R> {
  let built: PreparedStatement<R> | undefined;
  return (session, values) => {
    if (built === undefined) {
      const query = build(session);
      built = is(query, SQL)
        ? (sessionOf(session).prepareQuery(
            dialect.sqlToQuery(query),
            undefined,
            "reusable",
            false,
          ) as unknown as PreparedStatement<R>)
        : query;
    }
    const bound = Object.create(built) as PreparedStatement<R> & { client: postgres.Sql };
    bound.client = sessionOf(session).client;
    return bound.execute(values);
  };
}

/** A drizzle prepared query, as `.prepare(name)` returns it. */
interface PreparedStatement<R> {
  execute(values?: Record<string, unknown>): Promise<R>;
}

const dialect = new PgDialect();

/** The drizzle session behind a database or transaction, and its postgres.js client. */
function sessionOf(db: Tx) {
  const session = (db as unknown as { _: { session: PgSession & { client?: postgres.Sql } } })._
    .session;
  if (session.client === undefined) throw new Error("reusable needs a postgres.js database");
  return session as PgSession & { client: postgres.Sql };
}

/**
 * Runs statements of one transaction back to back without waiting for each answer:
 * they go out in one socket write, in the order given, and PostgreSQL answers them in
 * that order. Resolves with every result; rejects with the first failure (the ones
 * after it fail too, as PostgreSQL aborts the transaction), which rolls the
 * transaction back like any other error. Only for statements that do not need an
 * earlier one's answer to be built; constraints and triggers see the earlier ones'
 * effects, as with awaiting each.
 */
export function pipelined<T extends readonly unknown[]>(
  ...statements: { [K in keyof T]: () => PromiseLike<T[K]> }
): Promise<T> {
  // Each is started (its `then` called) before the next is built: drizzle's queries
  // start when first awaited, enqueueEvent when called.
  const started = statements.map(
    (statement) =>
      new Promise((resolve, reject) => {
        statement().then(resolve, reject);
      }),
  );
  return Promise.all(started) as unknown as Promise<T>;
}

/** Any drizzle database that can open a transaction. */
export interface TransactionalDb {
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
}

/**
 * What a transaction callback returns to end with these statements: tunedPool's begin
 * writes COMMIT right behind them instead of waiting for their answers (`commitWith`).
 */
export class CommitWith {
  constructor(readonly results: Promise<unknown>) {}
}

/**
 * Returned by a transaction's callback (of a tuned pool): `statements` are pipelined
 * and COMMIT goes out in the same write, so the transaction holds its locks for no
 * round trip to this process. PostgreSQL runs them in order; if one fails, the
 * transaction is aborted, COMMIT answers ROLLBACK, and the transaction rejects with that
 * statement's error. So nothing may need checking before the commit: whatever must not
 * commit has to fail in SQL (a constraint, or a guard statement). The transaction then
 * resolves with the statements' results.
 */
export function commitWith(...statements: (() => PromiseLike<unknown>)[]): CommitWith {
  return new CommitWith(pipelined(...statements));
}

/**
 * A transaction made of `statements` alone, sent with BEGIN and COMMIT in one write
 * (`commitWith`; on a row every order updates, the round trip it saves is what the next
 * order waits for). Resolves with every statement's result once committed. Needs a pool
 * made by `tunedPool` (openDatabase's).
 */
export async function transactionEndingWith<T extends readonly unknown[]>(
  db: TransactionalDb,
  statements: (tx: Tx) => { [K in keyof T]: () => PromiseLike<T[K]> },
): Promise<T> {
  const result: unknown = await db.transaction(async (tx) => commitWith(...statements(tx)));
  if (result instanceof CommitWith) {
    throw new Error("commitWith needs a database opened by openDatabase (tunedPool)");
  }
  return result as T;
}

/** The topics signalled by the transaction running on this async path (tunedPool's begin). */
const committing = new AsyncLocalStorage<Set<string>>();
const committedListeners = new WeakMap<postgres.Sql, Map<string, Set<() => void>>>();

/**
 * Asks for `topic` to be signalled to the pool's `onCommitted` listeners once the
 * transaction this runs in has committed; never for one that rolls back. Returns false,
 * doing nothing, when not called inside a transaction of a tuned pool.
 */
export function signalAfterCommit(topic: string): boolean {
  const signals = committing.getStore();
  signals?.add(topic);
  return signals !== undefined;
}

/**
 * `signalAfterCommit` for a statement that ran on `session`: inside a transaction the
 * signal waits for its commit; a statement run on the pool itself has committed by the
 * time it answered, so the pool's listeners hear it now.
 */
export function signalCommitted(session: Tx, topic: string): void {
  if (signalAfterCommit(topic)) return;
  notifyCommitted(sessionOf(session).client, new Set([topic]));
}

/**
 * Runs `listener` after each commit, on the tuned pool `pool`, of a transaction that
 * signalled `topic`. Only this process hears it. Returns a function that stops listening.
 */
export function onCommitted(pool: postgres.Sql, topic: string, listener: () => void): () => void {
  let topics = committedListeners.get(pool);
  if (topics === undefined) {
    topics = new Map();
    committedListeners.set(pool, topics);
  }
  let set = topics.get(topic);
  if (set === undefined) {
    set = new Set();
    topics.set(topic, set);
  }
  set.add(listener);
  return () => {
    topics.get(topic)?.delete(listener);
  };
}

function notifyCommitted(pool: postgres.Sql, signals: Set<string>) {
  const topics = committedListeners.get(pool);
  if (topics === undefined) return;
  for (const topic of signals) {
    for (const listener of topics.get(topic) ?? []) {
      try {
        listener();
      } catch {
        // The transaction has committed: a listener's failure must not say otherwise.
      }
    }
  }
}

/**
 * The SQLSTATE of a Postgres error, looking through drizzle's DrizzleQueryError
 * (which keeps the driver's error as `cause`), with the constraint it names.
 */
export function pgErrorCode(err: unknown): { code: string; constraint?: string } | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; depth++) {
    const { code, constraint_name } = e as { code?: unknown; constraint_name?: unknown };
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) {
      return typeof constraint_name === "string" ? { code, constraint: constraint_name } : { code };
    }
    e = e.cause;
  }
  return undefined;
}

export const UNIQUE_VIOLATION = "23505";

/** COMMIT found the transaction aborted by a statement whose error `fn` caught. */
export class TransactionRolledBack extends Error {
  override name = "TransactionRolledBack";
  constructor() {
    super("transaction rolled back: a statement in it failed and its error was caught");
  }
}

function preparing<S extends postgres.Sql>(sql: S, begin?: (...args: unknown[]) => unknown): S {
  const unsafe = (query: string, params?: unknown[], options?: object) =>
    sql.unsafe(query, params as never, { ...options, prepare: true });
  return new Proxy(sql, {
    get: (target, key, receiver) =>
      key === "unsafe"
        ? unsafe
        : key === "begin" && begin !== undefined
          ? begin
          : Reflect.get(target, key, receiver),
  });
}

async function migrateWithLock<TSchema extends Record<string, unknown>>(
  sql: postgres.Sql,
  db: Db<TSchema>,
  migrationsFolder: string,
  logger?: Logger,
) {
  // A session lock on one reserved connection; migrate() runs on other pool connections.
  const lock = await sql.reserve();
  try {
    await lock`select pg_advisory_lock(${MIGRATION_LOCK})`;
    const started = performance.now();
    await migrate(db, { migrationsFolder, migrationsSchema: "drizzle" });
    logger?.debug({ ms: Math.round(performance.now() - started) }, "migrations applied");
  } finally {
    await lock`select pg_advisory_unlock(${MIGRATION_LOCK})`.catch(() => undefined);
    lock.release();
  }
}

/**
 * Creates (if missing) a role and a database owned by it on the server at `adminUrl`,
 * and returns the URL a service uses to reach its own database.
 */
export async function ensureServiceDatabase(
  adminUrl: string,
  name: string,
  password: string,
): Promise<string> {
  if (!/^[a-z][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad database name "${name}"`);
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    // Two launchers may race on a fresh server: serialise on a lock.
    await admin.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`;
      const [role] = await tx`select 1 from pg_roles where rolname = ${name}`;
      if (role === undefined) {
        await tx.unsafe(`create role ${name} login password '${password.replaceAll("'", "''")}'`);
      } else {
        await tx.unsafe(`alter role ${name} password '${password.replaceAll("'", "''")}'`);
      }
    });
    const [exists] = await admin`select 1 from pg_database where datname = ${name}`;
    if (exists === undefined) {
      // CREATE DATABASE cannot run inside a transaction block.
      await admin.unsafe(`create database ${name} owner ${name}`).catch((err: unknown) => {
        if ((err as { code?: string }).code !== "42P04") throw err; // created meanwhile
      });
    }
  } finally {
    await admin.end({ timeout: 5 });
  }
  const url = new URL(adminUrl);
  url.username = name;
  url.password = password;
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops a database created by ensureServiceDatabase (tests clean up with it). */
export async function dropServiceDatabase(adminUrl: string, name: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.unsafe(`drop role if exists ${name}`);
  } finally {
    await admin.end({ timeout: 5 });
  }
}
