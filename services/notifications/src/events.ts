/**
 * The events the service consumes and what each one does: `EVENT_ROUTES` (subject,
 * payload type, effect), `createEventHandler` (one route as a consumer handler) and
 * `startNotificationConsumers` (one durable consumer per subject, as the runtime wants).
 *
 * An effect runs inside `processOnce`, so a redelivered event never makes a second
 * notification; delivery by SMTP runs after that transaction commits (dispatcher.ts),
 * local delivery is recorded in it (inserted SENT, or `settlement`). The recipient is
 * read with the inbox insert, and the notification's statements go out with COMMIT: two
 * writes per event.
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
import { commitWith, pipelined, reusable } from "@shopmesh/runtime/db.js";
import { uuidv7 } from "@shopmesh/runtime/ids.js";
import type { Logger } from "@shopmesh/runtime/logger.js";
import type { Tx } from "@shopmesh/runtime/outbox.js";
import { and, eq, sql } from "drizzle-orm";
import type { NotificationsDb } from "./db/database.js";
import {
  deliveryAttempts,
  type NotificationKind,
  notifications,
  type RecipientRow,
  recipients,
} from "./db/schema.js";
import type { Dispatcher, MessageFields, Settlement } from "./dispatcher.js";
import { announceEach } from "./feed.js";
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
  /** The user the event is about (their recipient row is read with the inbox insert). */
  userId: string;
  /**
   * Runs in the inbox transaction, given the user's recipient row if known and whether
   * the channel settles at insert (`Dispatcher.settlesAtInsert`). Returns the
   * notifications to deliver, and the statements still to send (with COMMIT).
   */
  apply(
    tx: Tx,
    eventId: string,
    to: RecipientRow | undefined,
    sentAtInsert: boolean,
  ): Promise<Recorded>;
}

/**
 * Notifications an event creates: the ids of those PENDING, the messages of those
 * inserted SENT (filled as their statements answer), and the statements not yet sent.
 */
interface Recorded {
  created: string[];
  sent: MessageFields[];
  statements: (() => PromiseLike<unknown>)[];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function route<D extends DescMessage>(
  name: string,
  subject: string,
  schema: D,
  check: (event: MessageShape<D>) => string | undefined,
  apply: (
    tx: Tx,
    event: MessageShape<D>,
    eventId: string,
    to: RecipientRow | undefined,
    sentAtInsert: boolean,
  ) => Promise<Recorded> | Recorded,
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
      return (
        problem ?? {
          // Every consumed event names its user (checked above for those that may not).
          userId: (event as unknown as { userId: string }).userId,
          apply: async (tx, eventId, to, sentAtInsert) =>
            apply(tx, event, eventId, to, sentAtInsert),
        }
      );
    },
  };
}

async function findRecipient(tx: Tx, userId: string): Promise<RecipientRow | undefined> {
  const [to] = await recipientOf(tx, { userId });
  return to;
}

/** Built once, as is `insertNotification`: every consumed event runs them. */
const recipientOf = reusable((db) =>
  db
    .select()
    .from(recipients)
    .where(eq(recipients.userId, sql.placeholder("userId")))
    .prepare("notifications_recipient"),
);

/**
 * A notification, announced to WatchNotifications streams at commit — only if inserted:
 * the unique event id skips a second one (the inbox makes that impossible; it is a
 * backstop). `sent`: inserted SENT with its one attempt row (local delivery, addressed).
 */
const insertNotification = reusable(
  () => sql`
    with created as (
      insert into ${notifications}
        (id, user_id, kind, recipient, subject, body, order_id, event_id, status, sent_at)
      values (${sql.placeholder("id")}::uuid, ${sql.placeholder("userId")}::uuid,
        ${sql.placeholder("kind")}, ${sql.placeholder("recipient")}, ${sql.placeholder("subject")},
        ${sql.placeholder("body")}, ${sql.placeholder("orderId")}::uuid, ${sql.placeholder("eventId")}::uuid,
        case when ${sql.placeholder("sent")}::boolean then 'SENT' else 'PENDING' end,
        case when ${sql.placeholder("sent")}::boolean then now() end)
      on conflict (event_id) do nothing
      returning id, user_id, status
    ), attempt as (
      insert into ${deliveryAttempts} (notification_id, attempt, outcome)
      select id, 1, 'SENT' from created where status = 'SENT'
    )
    ${announceEach(sql`created`)}`,
);

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
 * The statement that inserts a notification addressed to the user's known email (empty
 * until UserRegistered tells us) and announces it to WatchNotifications streams at commit:
 * PENDING, or SENT with its attempt row when the channel settles at insert and the
 * address is known. Its id is chosen here, so nothing has to be read back before it is sent.
 */
function recordNotification(
  tx: Tx,
  n: NewNotification,
  to: Pick<RecipientRow, "email" | "displayName"> | undefined,
  sentAtInsert: boolean,
): Recorded {
  const id = uuidv7();
  const content = n.compose(to?.displayName ?? "");
  const recipient = to?.email ?? "";
  const sent = sentAtInsert && recipient !== "";
  const recorded: Recorded = { created: sent ? [] : [id], sent: [], statements: [] };
  recorded.statements.push(() =>
    insertNotification(tx, {
      id,
      userId: n.userId,
      kind: n.kind,
      recipient,
      subject: content.subject,
      body: content.body,
      orderId: n.orderId ?? null,
      eventId: n.eventId,
      sent,
    }).then((inserted) => {
      // (Skipped by the event id: nothing to hand over.)
      if (sent && (inserted as unknown[]).length > 0)
        recorded.sent.push({ id, kind: n.kind, recipient, ...content });
    }),
  );
  return recorded;
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
    async (tx, e, eventId, _known, sentAtInsert) => {
      const to = { userId: e.userId, email: e.email, displayName: e.displayName };
      const welcome = recordNotification(
        tx,
        {
          userId: e.userId,
          kind: "WELCOME",
          eventId,
          compose: () => welcomeMessage(e.displayName),
        },
        to,
        sentAtInsert,
      );
      await pipelined(
        () =>
          tx
            .insert(recipients)
            .values(to)
            .onConflictDoUpdate({
              target: recipients.userId,
              set: { email: e.email, displayName: e.displayName, updatedAt: sql`now()` },
            }),
        ...welcome.statements,
      );
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
      return {
        created: [...welcome.created, ...waiting.map((w) => w.id)],
        sent: welcome.sent,
        statements: [],
      };
    },
  ),
  route(
    "order_confirmed",
    "shop.orders.order_confirmed",
    OrderConfirmedSchema,
    checkUserAndOrder,
    (tx, e, eventId, to, sentAtInsert) =>
      recordNotification(
        tx,
        {
          userId: e.userId,
          kind: "ORDER_CONFIRMED",
          orderId: e.orderId,
          eventId,
          compose: (name) => orderConfirmedMessage(name, e.orderId, e.total),
        },
        to,
        sentAtInsert,
      ),
  ),
  route(
    "order_cancelled",
    "shop.orders.order_cancelled",
    OrderCancelledSchema,
    checkUserAndOrder,
    (tx, e, eventId, to, sentAtInsert) =>
      recordNotification(
        tx,
        {
          userId: e.userId,
          kind: "ORDER_CANCELLED",
          orderId: e.orderId,
          eventId,
          compose: (name) => orderCancelledMessage(name, e.orderId, e.reason, e.wasConfirmed),
        },
        to,
        sentAtInsert,
      ),
  ),
  route(
    "payment_failed",
    "shop.payments.payment_failed",
    PaymentFailedSchema,
    checkUserAndOrder,
    (tx, e, eventId, to, sentAtInsert) =>
      recordNotification(
        tx,
        {
          userId: e.userId,
          kind: "PAYMENT_FAILED",
          orderId: e.orderId,
          eventId,
          compose: (name) => paymentFailedMessage(name, e.orderId, e.reason, e.retryable),
        },
        to,
        sentAtInsert,
      ),
  ),
  route(
    "payment_refunded",
    "shop.payments.payment_refunded",
    PaymentRefundedSchema,
    checkUserAndOrder,
    (tx, e, eventId, to, sentAtInsert) =>
      recordNotification(
        tx,
        {
          userId: e.userId,
          kind: "PAYMENT_REFUNDED",
          orderId: e.orderId,
          eventId,
          compose: (name) => paymentRefundedMessage(name, e.orderId, e.amount),
        },
        to,
        sentAtInsert,
      ),
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
    let settled: Settlement | undefined;
    const applied = await processOnce(
      db,
      durable,
      msg.eventId,
      async (tx, to) => {
        const recorded = await parsed.apply(tx, msg.eventId, to, dispatcher.settlesAtInsert);
        created = recorded.created;
        // Local delivery is settled in this transaction; a mail server is called after it.
        settled = dispatcher.settlement(tx, created, recorded.sent);
        return commitWith(...recorded.statements, ...(settled ? [settled.statement] : []));
      },
      // The user's address and name, read in the same write as the inbox insert.
      (tx: Tx) => findRecipient(tx, parsed.userId),
      // Applied in batches with other users' events (never two of one user).
      parsed.userId,
    );
    if (applied && settled !== undefined) return settled.hand();
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
