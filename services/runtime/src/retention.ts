/**
 * Retention of the event tables, so that they do not grow for ever: `startRetention`
 * deletes, every `everyMs` (10 minutes),
 * - outbox rows published more than `outboxMs` ago (a day: long enough for a person to
 *   look at what was sent; JetStream's duplicate window, which a republished row relies
 *   on, is two minutes);
 * - inbox rows recorded more than `inboxMs` ago (eight days: a message can be delivered
 *   for as long as the stream keeps it — seven days — since a consumer created anew
 *   replays it all, and the inbox must still know it then).
 * Each pass deletes in batches of 5,000, oldest first, so that no statement holds many
 * locks or runs long. Tables the database does not have are skipped.
 */
import type postgres from "postgres";
import { STREAM_MAX_AGE_MS } from "./bus.js";
import { every } from "./every.js";
import type { Logger } from "./logger.js";

export const OUTBOX_RETENTION_MS = 24 * 3600_000;
export const INBOX_RETENTION_MS = STREAM_MAX_AGE_MS + 24 * 3600_000;
const BATCH = 5_000;

export interface Retention {
  /** One pass now: the rows deleted from each table. */
  runOnce(): Promise<{ outbox: number; inbox: number }>;
  stop(): Promise<void>;
}

export function startRetention(options: {
  sql: postgres.Sql;
  logger: Logger;
  everyMs?: number;
  outboxMs?: number;
  inboxMs?: number;
}): Retention {
  const { sql, logger } = options;
  const outboxMs = options.outboxMs ?? OUTBOX_RETENTION_MS;
  const inboxMs = options.inboxMs ?? INBOX_RETENTION_MS;

  /** Deletes rows `batch` picks (at most BATCH at a time) until fewer come back. */
  const prune = async (
    table: "outbox" | "inbox",
    batch: () => postgres.PendingQuery<postgres.Row[]>,
  ) => {
    const [exists] = await sql<{ found: boolean }[]>`
      select to_regclass(${table}) is not null as found`;
    if (!exists?.found) return 0;
    let deleted = 0;
    for (;;) {
      const n = (await batch()).count;
      deleted += n;
      if (n < BATCH) return deleted;
    }
  };

  const runOnce = async () => {
    const outbox = await prune(
      "outbox",
      () => sql`
        delete from outbox where seq in (
          select seq from outbox
          where published_at < now() - make_interval(secs => ${outboxMs / 1000})
          order by seq limit ${BATCH})`,
    );
    const inbox = await prune(
      "inbox",
      () => sql`
        delete from inbox where (consumer, event_id) in (
          select consumer, event_id from inbox
          where processed_at < now() - make_interval(secs => ${inboxMs / 1000})
          order by processed_at limit ${BATCH})`,
    );
    if (outbox + inbox > 0) logger.info({ outbox, inbox }, "event tables pruned");
    return { outbox, inbox };
  };

  const periodic = every(options.everyMs ?? 10 * 60_000, runOnce, (err) =>
    logger.warn({ err }, "pruning the event tables failed; next pass retries"),
  );
  void periodic.pass();
  return { runOnce, stop: periodic.stop };
}
