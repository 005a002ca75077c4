/**
 * New notifications as they are committed, across replicas, via Postgres LISTEN/NOTIFY:
 * - `announceEach(rows)` ends the statement that inserts notifications: a NOTIFY per row
 *   inserted, which Postgres sends at commit, and never for a rolled-back insert;
 * - `createNotificationFeed(sql)` listens once per process (one dedicated connection,
 *   however many streams are open) and hands each id to the streams of that user.
 *
 * Whichever replica consumed the event, every replica's WatchNotifications streams hear it.
 */
import type { Logger } from "@shopmesh/runtime/logger.js";
import { type SQL, sql } from "drizzle-orm";
import type postgres from "postgres";

export const NOTIFY_CHANNEL = "notifications";

/**
 * The end of a statement that inserts notifications: tells every listener, at commit, that
 * each row of `rows` (a CTE returning `id` and `user_id`) exists. Ids only: the payload
 * limit is 8000 bytes, and listeners read the row themselves.
 */
export function announceEach(rows: SQL): SQL {
  return sql`select pg_notify(${NOTIFY_CHANNEL}, user_id::text || ':' || id::text) from ${rows}`;
}

export interface FeedListener {
  /** A notification of the subscribed user was committed. */
  created(notificationId: string): void;
  /** The LISTEN connection was re-established: notifications may have been missed. */
  reconnected(): void;
}

export interface NotificationFeed {
  /** Starts hearing `userId`'s notifications (resolves once LISTEN is in place); returns unsubscribe. */
  subscribe(userId: string, listener: FeedListener): Promise<() => void>;
  /** Open subscriptions (a gauge; tests wait on it to know a stream is listening). */
  size(): number;
}

export function createNotificationFeed(sql: postgres.Sql, logger: Logger): NotificationFeed {
  const byUser = new Map<string, Set<FeedListener>>();
  let listening: Promise<unknown> | undefined;
  let established = 0;

  const onPayload = (payload: string) => {
    const [userId, notificationId] = payload.split(":");
    if (userId === undefined || notificationId === undefined) return;
    for (const listener of byUser.get(userId) ?? []) listener.created(notificationId);
  };
  // postgres.js re-issues LISTEN after its connection drops and calls this again.
  const onListen = () => {
    established++;
    if (established === 1) return;
    logger.warn("notifications LISTEN re-established; open streams catch up");
    for (const listeners of byUser.values()) for (const l of listeners) l.reconnected();
  };
  // Listened once and kept: unlistening after a reconnect does not work in postgres.js
  // 3.4 (its re-listen registers a new listener object), and the connection is cheap.
  const listen = () => {
    listening ??= sql.listen(NOTIFY_CHANNEL, onPayload, onListen).catch((err: unknown) => {
      listening = undefined; // the next subscriber tries again
      throw err;
    });
    return listening;
  };

  return {
    async subscribe(userId, listener) {
      let set = byUser.get(userId);
      if (set === undefined) {
        set = new Set();
        byUser.set(userId, set);
      }
      set.add(listener);
      const unsubscribe = () => {
        const current = byUser.get(userId);
        current?.delete(listener);
        if (current?.size === 0) byUser.delete(userId);
      };
      try {
        await listen();
      } catch (err) {
        unsubscribe();
        throw err;
      }
      return unsubscribe;
    },
    size() {
      let n = 0;
      for (const set of byUser.values()) n += set.size;
      return n;
    },
  };
}
