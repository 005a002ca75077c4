/**
 * The notifications service's tables (drizzle pg-core): `notifications`,
 * `delivery_attempts` and `recipients`, plus the runtime's `inbox` (re-exported so
 * that the migrations create it; every consumer records the events it applied there).
 */
import { sql } from "drizzle-orm";
import {
  check,
  index,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";

// From the module, not the runtime's index: see main.ts.
export { inbox } from "@shopmesh/runtime/bus.js";

export const NOTIFICATION_KINDS = [
  "WELCOME",
  "ORDER_CONFIRMED",
  "ORDER_CANCELLED",
  "PAYMENT_FAILED",
  "PAYMENT_REFUNDED",
] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

export const NOTIFICATION_STATUSES = ["PENDING", "SENT", "FAILED"] as const;
export type NotificationStatus = (typeof NOTIFICATION_STATUSES)[number];

/** Email is the only channel today; the column is there so a second one is not a migration. */
export const CHANNELS = ["EMAIL"] as const;

const inList = (values: readonly string[]) =>
  sql.raw(`(${values.map((v) => `'${v}'`).join(", ")})`);

export const notifications = pgTable(
  "notifications",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    userId: uuid("user_id").notNull(),
    kind: text("kind", { enum: NOTIFICATION_KINDS }).notNull(),
    channel: text("channel", { enum: CHANNELS }).notNull().default("EMAIL"),
    /**
     * The email address. Empty while the user's address is unknown (an order event
     * processed before the user's UserRegistered); filled in, and the notification
     * delivered, when UserRegistered arrives.
     */
    recipient: text("recipient").notNull().default(""),
    subject: text("subject").notNull(),
    body: text("body").notNull(),
    orderId: uuid("order_id"),
    status: text("status", { enum: NOTIFICATION_STATUSES }).notNull().default("PENDING"),
    /**
     * The event that caused it. Unique: a second guard, beside the inbox, against one
     * event making two notifications; and how a redelivered event finds a notification
     * whose delivery was cut short (crash after commit) to finish it.
     */
    eventId: uuid("event_id").notNull().unique("notifications_event_id_unique"),
    // Millisecond precision, like a JS Date: the page token carries created_at through
    // a Date, and a microsecond remainder would make the keyset skip rows.
    createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    sentAt: timestamp("sent_at", { withTimezone: true }),
    /**
     * While in the future, one process is delivering this notification; others leave it
     * alone. A lease rather than a lock, so a crashed sender does not block it forever.
     */
    leaseUntil: timestamp("lease_until", { withTimezone: true }),
  },
  (t) => [
    // ListNotifications reads one user's newest first: a backward scan of this index.
    index("notifications_user_created_id").on(t.userId, t.createdAt, t.id),
    // The sweeper looks for PENDING leftovers; once delivered, rows leave this index.
    index("notifications_pending_created").on(t.createdAt).where(sql`${t.status} = 'PENDING'`),
    check("notifications_kind_known", sql`${t.kind} in ${inList(NOTIFICATION_KINDS)}`),
    check("notifications_status_known", sql`${t.status} in ${inList(NOTIFICATION_STATUSES)}`),
    check("notifications_channel_known", sql`${t.channel} in ${inList(CHANNELS)}`),
  ],
);

export type NotificationRow = typeof notifications.$inferSelect;
export type RecipientRow = typeof recipients.$inferSelect;

/** One row per try to hand a notification to its channel, successful or not. */
export const deliveryAttempts = pgTable(
  "delivery_attempts",
  {
    notificationId: uuid("notification_id")
      .notNull()
      .references(() => notifications.id, { onDelete: "cascade" }),
    /** 1, 2, 3… per notification. */
    attempt: smallint("attempt").notNull(),
    outcome: text("outcome", { enum: ["SENT", "FAILED"] }).notNull(),
    /** Why it failed (the transport's message); null when sent. */
    error: text("error"),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.notificationId, t.attempt] }),
    check("delivery_attempts_outcome_known", sql`${t.outcome} in ('SENT', 'FAILED')`),
  ],
);

/**
 * Where to reach a user, learnt from UserRegistered: order and payment events carry
 * only the user id, and no service reads another's tables.
 */
export const recipients = pgTable("recipients", {
  userId: uuid("user_id").primaryKey(),
  email: text("email").notNull(),
  displayName: text("display_name").notNull().default(""),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});
