/**
 * The events the service consumes and what each one does: `EVENT_ROUTES` (subject,
 * payload type, effect), `createEventHandler` (one route as a consumer handler) and
 * `startNotificationConsumers` (one durable consumer per subject, as the runtime wants).
 *
 * An effect runs inside `processOnce`, so a redelivered event never makes a second
 * notification; delivery by SMTP runs after that transaction commits (dispatcher.ts),
 * local delivery is recorded in it (`settleInTransaction`).
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { fromBinary } from "@bufbuild/protobuf";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
} from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import {
  PaymentFailedSchema,
  PaymentRefundedSchema,
} from "@shopmesh/gen/shop/payments/v1/events_pb.js";
import {
  type Bus,
  type Consumer,
  type EventMessage,
  processOnce,
  startConsumer,
} from "@shopmesh/runtime/bus.js";
import type { Logger } from "@shopmesh/runtime/logger.js";
import type { Tx } from "@shopmesh/runtime/outbox.js";
import { and, eq, sql } from "drizzle-orm";
import type { NotificationsDb } from "./db/database.js";
import { type NotificationKind, notifications, recipients } from "./db/schema.js";
import type { Dispatcher } from "./dispatcher.js";
import { announceCreated } from "./feed.js";
import {
  type MessageContent,
  orderCancelledMessage,
  orderConfirmedMessage,
  paymentFailedMessage,
  paymentRefundedMessage,
  welcomeMessage,
} from "./messages.js";

/** One consumed event: where it arrives, and what it does in the inbox transaction. */
export interface EventRoute {
  /** The event's name in its subject; the durable consumer is `notifications-<name>`. */
  name: string;
  subject: string;
  /**
   * Decodes and checks a payload. A string says what is wrong with it: such an event
   * can never be applied, however often it is redelivered.
   */
  parse(data: Uint8Array): ParsedEvent | string;
}

interface ParsedEvent {
  /** Runs in the inbox transaction; returns the notifications to deliver after commit. */
  apply(tx: Tx, eventId: string): Promise<string[]>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function route<D extends DescMessage>(
  name: string,
  subject: string,
  schema: D,
  check: (event: MessageShape<D>) => string | undefined,
  apply: (tx: Tx, event: MessageShape<D>, eventId: string) => Promise<string[]>,
): EventRoute {
  return {
    name,
    subject,
    parse(data) {
      let event: MessageShape<D>;
      try {
        event = fromBinary(schema, data);
      } catch (err) {
        return `not a valid ${schema.typeName}: ${String(err)}`;
      }
      const problem = check(event);
      return problem ?? { apply: (tx, eventId) => apply(tx, event, eventId) };
    },
  };
}

/** Order and payment events all name a user and an order. */
function checkUserAndOrder(e: { userId: string; orderId: string }): string | undefined {
  if (!UUID.test(e.userId)) return `user_id "${e.userId}" is not a UUID`;
  if (!UUID.test(e.orderId)) return `order_id "${e.orderId}" is not a UUID`;
  return undefined;
}

interface NewNotification {
  userId: string;
  kind: NotificationKind;
  orderId?: string;
  eventId: string;
  /** The wording, given the user's display name (empty when not known yet). */
  compose(displayName: string): MessageContent;
}

/**
 * Inserts a PENDING notification addressed to the user's known email (empty until
 * UserRegistered tells us) and announces it to WatchNotifications streams at commit.
 */
async function recordNotification(tx: Tx, n: NewNotification): Promise<string[]> {
  const [to] = await tx.select().from(recipients).where(eq(recipients.userId, n.userId));
  const content = n.compose(to?.displayName ?? "");
  const [row] = await tx
    .insert(notifications)
    .values({
      userId: n.userId,
      kind: n.kind,
      recipient: to?.email ?? "",
      subject: content.subject,
      body: content.body,
      orderId: n.orderId ?? null,
      eventId: n.eventId,
    })
    // The inbox already makes this a no-op on redelivery; the unique event id is a backstop.
    .onConflictDoNothing({ target: notifications.eventId })
    .returning({ id: notifications.id });
  if (row === undefined) return [];
  await announceCreated(tx, n.userId, row.id);
  return [row.id];
}

export const EVENT_ROUTES: EventRoute[] = [
  route(
    "user_registered",
    "shop.identity.user_registered",
    UserRegisteredSchema,
    (e) => {
      if (!UUID.test(e.userId)) return `user_id "${e.userId}" is not a UUID`;
      if (!e.email.includes("@")) return "email is missing";
      return undefined;
    },
    async (tx, e, eventId) => {
      await tx
        .insert(recipients)
        .values({ userId: e.userId, email: e.email, displayName: e.displayName })
        .onConflictDoUpdate({
          target: recipients.userId,
          set: { email: e.email, displayName: e.displayName, updatedAt: sql`now()` },
        });
      const welcome = await recordNotification(tx, {
        userId: e.userId,
        kind: "WELCOME",
        eventId,
        compose: () => welcomeMessage(e.displayName),
      });
      // Order events consumed before this one had no address to go to: now they have.
      const waiting = await tx
        .update(notifications)
        .set({ recipient: e.email })
        .where(
          and(
            eq(notifications.userId, e.userId),
            eq(notifications.recipient, ""),
            eq(notifications.status, "PENDING"),
          ),
        )
        .returning({ id: notifications.id });
      return [...welcome, ...waiting.map((w) => w.id)];
    },
  ),
  route(
    "order_confirmed",
    "shop.orders.order_confirmed",
    OrderConfirmedSchema,
    checkUserAndOrder,
    (tx, e, eventId) =>
      recordNotification(tx, {
        userId: e.userId,
        kind: "ORDER_CONFIRMED",
        orderId: e.orderId,
        eventId,
        compose: (name) => orderConfirmedMessage(name, e.orderId, e.total),
      }),
  ),
  route(
    "order_cancelled",
    "shop.orders.order_cancelled",
    OrderCancelledSchema,
    checkUserAndOrder,
    (tx, e, eventId) =>
      recordNotification(tx, {
        userId: e.userId,
        kind: "ORDER_CANCELLED",
        orderId: e.orderId,
        eventId,
        compose: (name) => orderCancelledMessage(name, e.orderId, e.reason, e.wasConfirmed),
      }),
  ),
  route(
    "payment_failed",
    "shop.payments.payment_failed",
    PaymentFailedSchema,
    checkUserAndOrder,
    (tx, e, eventId) =>
      recordNotification(tx, {
        userId: e.userId,
        kind: "PAYMENT_FAILED",
        orderId: e.orderId,
        eventId,
        compose: (name) => paymentFailedMessage(name, e.orderId, e.reason, e.retryable),
      }),
  ),
  route(
    "payment_refunded",
    "shop.payments.payment_refunded",
    PaymentRefundedSchema,
    checkUserAndOrder,
    (tx, e, eventId) =>
      recordNotification(tx, {
        userId: e.userId,
        kind: "PAYMENT_REFUNDED",
        orderId: e.orderId,
        eventId,
        compose: (name) => paymentRefundedMessage(name, e.orderId, e.amount),
      }),
  ),
];

export interface EventDeps {
  db: NotificationsDb;
  dispatcher: Dispatcher;
  logger: Logger;
}

/** The consumer handler of one route; `durable` is also its inbox key. */
export function createEventHandler(
  deps: EventDeps,
  durable: string,
  eventRoute: EventRoute,
): (msg: EventMessage) => Promise<void> {
  const { db, dispatcher } = deps;
  const logger = deps.logger.child({ consumer: durable });
  return async (msg) => {
    const parsed = UUID.test(msg.eventId)
      ? eventRoute.parse(msg.data)
      : `event id "${msg.eventId}" is not a UUID`;
    if (typeof parsed === "string") {
      // Retrying cannot fix a malformed event, and holding the consumer through the
      // runtime's redelivery backoff would delay every event behind it. It stays in
      // the stream for a human; this line says where.
      logger.error(
        { subject: msg.subject, event_id: msg.eventId, problem: parsed },
        "invalid event skipped",
      );
      return;
    }
    let created: string[] = [];
    let announce: (() => Promise<void>) | undefined;
    const applied = await processOnce(db, durable, msg.eventId, async (tx) => {
      created = await parsed.apply(tx, msg.eventId);
      // Local delivery is settled in this transaction; a mail server is called after it.
      announce = await dispatcher.settleInTransaction(tx, created);
    });
    if (applied && announce !== undefined) return announce();
    // Applied before, yet redelivered: the last try may have died between commit and
    // delivery. Whatever of this event is still PENDING is delivered now.
    const toDeliver = applied
      ? created
      : (
          await db
            .select({ id: notifications.id })
            .from(notifications)
            .where(and(eq(notifications.eventId, msg.eventId), eq(notifications.status, "PENDING")))
        ).map((r) => r.id);
    for (const id of toDeliver) await dispatcher.deliver(id);
  };
}

export interface NotificationConsumers {
  /** Durable consumer names, one per subject. */
  durables: string[];
  stop(): Promise<void>;
}

/**
 * One durable consumer per consumed subject. `durableSuffix` keeps test runs, which
 * share the stream and its fixed subjects, from sharing consumers.
 */
export async function startNotificationConsumers(options: {
  bus: Bus;
  deps: EventDeps;
  durableSuffix?: string;
}): Promise<NotificationConsumers> {
  const started: Consumer[] = [];
  const durables: string[] = [];
  const stop = async () => {
    await Promise.all(started.map((c) => c.stop()));
  };
  try {
    for (const r of EVENT_ROUTES) {
      const durable = `notifications-${r.name}${options.durableSuffix ?? ""}`;
      started.push(
        await startConsumer({
          bus: options.bus,
          durable,
          subject: r.subject,
          handler: createEventHandler(options.deps, durable, r),
          logger: options.deps.logger,
        }),
      );
      durables.push(durable);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { durables, stop };
}
