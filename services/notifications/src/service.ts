/**
 * NotificationService handlers: `createNotificationService(deps)` returns the
 * registration for createGrpcServer.
 * - ListNotifications: the caller's own notifications, newest first, keyset-paged;
 * - WatchNotifications: the caller's notifications as they are recorded, from any
 *   replica (feed.ts, LISTEN/NOTIFY), until the client cancels or the server stops.
 *
 * Both authenticate the caller's JWT; a user only ever sees their own notifications.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  NotificationChannel,
  NotificationKind,
  type NotificationSchema,
  NotificationService,
  NotificationStatus,
} from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { authenticate, type TokenVerifier } from "@shopmesh/runtime/auth.js";
import type { CallContext } from "@shopmesh/runtime/context.js";
import { type ServiceRegistration, serve } from "@shopmesh/runtime/grpc-server.js";
import { createdAtCursor, pageTokenCodec } from "@shopmesh/runtime/page-token.js";
import { and, asc, desc, eq, sql } from "drizzle-orm";
import type { NotificationsDb } from "./db/database.js";
import { type NotificationRow, notifications } from "./db/schema.js";
import type { NotificationFeed } from "./feed.js";

export const DEFAULT_PAGE_SIZE = 20;

/**
 * ListNotifications page tokens: the last (created_at, id) served, newest first.
 * Notifications that arrive between pages are newer, so they land before the first
 * page, not inside the listing. A listing is always the caller's own: no scope.
 */
const pageTokens = pageTokenCodec(createdAtCursor);

export interface NotificationServiceDeps {
  db: NotificationsDb;
  verifier: TokenVerifier;
  feed: NotificationFeed;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function toNotificationProto(
  row: NotificationRow,
): MessageInitShape<typeof NotificationSchema> {
  return {
    id: row.id,
    userId: row.userId,
    kind: NotificationKind[row.kind],
    channel: NotificationChannel[row.channel],
    recipient: row.recipient,
    subject: row.subject,
    body: row.body,
    orderId: row.orderId ?? "",
    status: NotificationStatus[row.status],
    createTime: timestampFromDate(row.createdAt),
  };
}

export function createNotificationService(deps: NotificationServiceDeps): ServiceRegistration[] {
  const { db, verifier, feed } = deps;

  /** The caller's user id, or undefined for a token whose subject cannot own notifications. */
  const caller = async (ctx: CallContext) => {
    const claims = await authenticate(ctx, verifier);
    // Tokens come from identity, whose user ids are UUIDs; anything else owns nothing
    // (and would make Postgres reject the query as INTERNAL).
    return UUID.test(claims.sub) ? claims.sub : undefined;
  };

  const findOwn = async (userId: string, id: string) => {
    const [row] = await db
      .select()
      .from(notifications)
      .where(and(eq(notifications.id, id), eq(notifications.userId, userId)));
    return row;
  };

  return [
    serve(NotificationService, {
      async listNotifications(req, ctx) {
        const userId = await caller(ctx);
        const cursor = req.pageToken === "" ? undefined : pageTokens.decode(req.pageToken);
        if (userId === undefined) return { notifications: [], nextPageToken: "" };
        const pageSize = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize;
        const rows = await db
          .select()
          .from(notifications)
          .where(
            and(
              eq(notifications.userId, userId),
              cursor === undefined
                ? undefined
                : sql`(${notifications.createdAt}, ${notifications.id}) < (${cursor.createdAt.toISOString()}::timestamptz, ${cursor.id}::uuid)`,
            ),
          )
          .orderBy(desc(notifications.createdAt), desc(notifications.id))
          // One more than asked tells whether there is a next page.
          .limit(pageSize + 1);
        const page = rows.slice(0, pageSize);
        const last = page.at(-1);
        return {
          notifications: page.map(toNotificationProto),
          nextPageToken:
            rows.length > pageSize && last !== undefined
              ? pageTokens.encode({ createdAt: last.createdAt, id: last.id })
              : "",
        };
      },

      async *watchNotifications(_req, ctx) {
        const userId = await caller(ctx);
        if (userId === undefined) return;
        const queue: string[] = [];
        let catchUp = false;
        let wake: (() => void) | undefined;
        const unsubscribe = await feed.subscribe(userId, {
          created(id) {
            queue.push(id);
            wake?.();
          },
          reconnected() {
            catchUp = true;
            wake?.();
          },
        });
        try {
          // The database's clock, the one created_at is stamped with; as text, because
          // drizzle's postgres.js driver hands raw timestamps over as strings anyway.
          const [clock] = await db.execute<{ now: string }>(sql`select now()::text as now`);
          const since = clock?.now ?? new Date().toISOString();
          // Sent on this stream: a catch-up after a reconnect must not repeat them.
          const sent = new Set<string>();
          while (!ctx.signal.aborted) {
            if (catchUp) {
              catchUp = false;
              const missed = await db
                .select({ id: notifications.id })
                .from(notifications)
                .where(
                  and(
                    eq(notifications.userId, userId),
                    sql`${notifications.createdAt} >= ${since}::timestamptz`,
                  ),
                )
                .orderBy(asc(notifications.createdAt), asc(notifications.id));
              queue.push(...missed.map((m) => m.id));
            }
            const id = queue.shift();
            if (id === undefined) {
              // Nothing queued: sleep until the feed has news or the call ends.
              await new Promise<void>((resolve) => {
                const done = () => {
                  wake = undefined;
                  ctx.signal.removeEventListener("abort", done);
                  resolve();
                };
                wake = done;
                ctx.signal.addEventListener("abort", done, { once: true });
              });
              continue;
            }
            if (sent.has(id)) continue;
            const row = await findOwn(userId, id);
            if (row === undefined) continue;
            sent.add(id);
            yield { notification: toNotificationProto(row) };
          }
        } finally {
          unsubscribe();
        }
      },
    }),
  ];
}
