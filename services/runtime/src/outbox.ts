/**
 * The transactional outbox: a service never publishes from a request handler. It
 * writes the event here in the same transaction as the state change; a relay
 * publishes rows to NATS JetStream (subject, Nats-Msg-Id = id) and marks them sent.
 *
 * Each service's drizzle schema re-exports `outbox` so its migrations create the table.
 */
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type SQL, sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import {
  bigserial,
  customType,
  index,
  jsonb,
  pgTable,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";
import { currentCall } from "./context.js";
import { reusable, signalAfterCommit, signalCommitted } from "./db.js";
import { uuidv7 } from "./ids.js";
import { traceHeaders } from "./tracing.js";

const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({
  dataType: () => "bytea",
  toDriver: (v) => Buffer.from(v),
  fromDriver: (v) => new Uint8Array(v),
});

export const outbox = pgTable(
  "outbox",
  {
    /** Publication order. */
    seq: bigserial("seq", { mode: "number" }).primaryKey(),
    /**
     * The event id: Nats-Msg-Id, so JetStream drops a duplicate publish. Time-ordered
     * (`uuidv7`) and made here, never looked up: no index of its own (ADR 0011).
     */
    id: uuid("id").notNull(),
    /** NATS subject, shop.<domain>.<event>. */
    subject: text("subject").notNull(),
    /** Fully qualified protobuf type of the payload, e.g. shop.orders.v1.OrderPlaced. */
    type: text("type").notNull(),
    payload: bytea("payload").notNull(),
    /** W3C trace context and request id of the request that caused the event. */
    headers: jsonb("headers").$type<Record<string, string>>().notNull().default({}),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    publishedAt: timestamp("published_at", { withTimezone: true }),
  },
  (t) => [index("outbox_unpublished").on(t.seq).where(sql`${t.publishedAt} is null`)],
);

/** Any drizzle Postgres database or transaction. */
export type Tx = PgDatabase<PgQueryResultHKT, Record<string, unknown>>;

/**
 * Adds an event to the outbox inside the caller's transaction. The message's
 * `event_id` and `occur_time` fields (every event has them) are filled in here.
 */
export async function enqueueEvent<Desc extends DescMessage>(
  tx: Tx,
  subject: string,
  schema: Desc,
  init: MessageInitShape<Desc>,
  headers: Record<string, string> = {},
): Promise<string> {
  const row = outboxRow(subject, schema, init, headers);
  await insertEvent(tx, row.values);
  // Wakes this process's relay once the transaction commits. Not a NOTIFY: PostgreSQL
  // serialises the commits of every notifying transaction of the whole server, WAL
  // flush included, and at saga load that queue was the bottleneck (ADR 0004).
  signalAfterCommit(OUTBOX_COMMITTED);
  return row.id;
}

/** An outbox row's columns, and the placeholders `outboxRow(…).values` fills. */
const EVENT_COLUMNS = sql`outbox (id, subject, type, payload, headers)`;
const EVENT_VALUES = sql`${sql.placeholder("outboxId")}::uuid, ${sql.placeholder("outboxSubject")},
  ${sql.placeholder("outboxType")}, ${sql.placeholder("outboxPayload")},
  ${sql.placeholder("outboxMeta")}::jsonb`;

/** Built once (every event goes through it). */
const insertEvent = reusable(() => sql`insert into ${EVENT_COLUMNS} values (${EVENT_VALUES})`);

/**
 * A change and the event that announces it, in one statement: `change` (an UPDATE,
 * INSERT or DELETE … RETURNING, with `sql.placeholder(name)` for its values) runs, and
 * the event is written only if it returned a row. For a change that may find nothing to
 * do — a conditional update another worker won — without a round trip to look before
 * writing the event. Built once (`reusable`); the runner takes the change's values and
 * the event, and resolves with the rows `change` returned (column names as in SQL):
 *
 *   const settle = changeWithEvent((db) => db.update(payments).set(…)
 *     .where(eq(payments.id, sql.placeholder("id"))).returning(…).getSQL());
 *   const rows = await settle(tx, { id }, SUBJECT, PaymentSucceededSchema, { … });
 *
 * The event's own placeholders are named `outbox…`; the change's must not be.
 */
export function changeWithEvent<Row extends Record<string, unknown>>(change: (db: Tx) => SQL) {
  return statementWithEvent<Row>(
    (db, insertEvent) => sql`
      with changed as (${change(db)}), event as (
        ${insertEvent} where exists (select 1 from changed)
      )
      select * from changed`,
  );
}

/**
 * Any one statement that writes an event: `build(db, insertEvent)` returns it, with
 * `insertEvent` — `insert into outbox (…) select <the event's values>` — placed where the
 * event belongs, typically as a CTE that ends it with `from <a CTE>` or `where …`, so
 * that the event is written exactly when the rest is. For several changes that must
 * commit together, one statement instead of a transaction of several: PostgreSQL answers
 * (and flushes) every statement on its own, so each one saved is a write and a wake-up on
 * both sides. Built once; runs like `changeWithEvent`'s runner.
 */
export function statementWithEvent<Row extends Record<string, unknown>>(
  build: (db: Tx, insertEvent: SQL) => SQL,
) {
  const statement = reusable((db) =>
    build(db, sql`insert into ${EVENT_COLUMNS} select ${EVENT_VALUES}`),
  );
  return async <Desc extends DescMessage>(
    tx: Tx,
    values: Record<string, unknown>,
    subject: string,
    schema: Desc,
    init: MessageInitShape<Desc>,
    headers: Record<string, string> = {},
  ): Promise<Row[]> => {
    const rows = await statement(tx, {
      ...values,
      ...outboxRow(subject, schema, init, headers).values,
    });
    // (A statement that wrote no event wakes the relay for nothing: one empty pass.)
    signalCommitted(tx, OUTBOX_COMMITTED);
    return rows as unknown as Row[];
  };
}

/**
 * The outbox row of an event on `subject`: its id, which also fills the message's `event_id` (and
 * `occur_time`); the payload; and the headers — the trace context and request id of the
 * request or event that caused it, so the relay's publish span and every consumer's span
 * become its descendants and the saga is one trace.
 */
function outboxRow<Desc extends DescMessage>(
  subject: string,
  schema: Desc,
  init: MessageInitShape<Desc>,
  headers: Record<string, string>,
) {
  const id = uuidv7();
  const message = create(schema, {
    ...(init as object),
    eventId: id,
    occurTime: timestampFromDate(new Date()),
  } as unknown as MessageInitShape<Desc>);
  const call = currentCall();
  const traced = traceHeaders(call?.trace);
  if (call !== undefined) traced["x-request-id"] = call.requestId;
  return {
    id,
    /** For EVENT_VALUES's placeholders. */
    values: {
      outboxId: id,
      outboxSubject: subject,
      outboxType: schema.typeName,
      outboxPayload: Buffer.from(toBinary(schema, message)),
      outboxMeta: JSON.stringify({ ...traced, ...headers }),
    },
  };
}

/** The tuned pool's after-commit topic of a transaction that wrote outbox rows. */
export const OUTBOX_COMMITTED = "outbox";
