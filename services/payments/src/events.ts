/**
 * The payments side of the order saga: `startPaymentConsumers` runs two durable
 * consumers, built from `createOrderPlacedHandler` and `createOrderCancelledHandler`.
 *
 * OrderPlaced → charge the order, exactly once in effect:
 *   1. insert the payment PENDING (order_id is UNIQUE: one payment per order, ever);
 *      a payment already final means a duplicate event or a cancel that came first;
 *   2. charge through the provider, outside any transaction, with the order id as
 *      idempotency key, retrying transient errors with backoff (attempts counted);
 *   3. one transaction: a conditional update (status = 'PENDING') to CAPTURED/FAILED,
 *      the PaymentSucceeded/PaymentFailed event in the outbox, the event id in the inbox.
 * A crash between 2 and 3 redelivers the event; the charge is repeated with the same
 * key, so the provider answers with the same charge and nothing is captured twice. Two
 * replicas racing on one order both get that one answer, and the conditional update
 * lets exactly one of them write the event.
 *
 * OrderCancelled → refund a captured payment (idempotency key "refund:" + order id),
 * mark a payment that does not exist yet as FAILED so a late OrderPlaced charges
 * nothing, and wait (redelivery with backoff) while a charge is in flight.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import { OrderCancelledSchema, OrderPlacedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import {
  PaymentFailedSchema,
  PaymentRefundedSchema,
  PaymentSucceededSchema,
} from "@shopmesh/gen/shop/payments/v1/events_pb.js";
import {
  type Bus,
  type Consumer,
  type EventMessage,
  processOnce,
  startConsumer,
} from "@shopmesh/runtime/bus.js";
import { commitTogether } from "@shopmesh/runtime/commit-together.js";
import { commitWith, reusable } from "@shopmesh/runtime/db.js";
import { uuidv7 } from "@shopmesh/runtime/ids.js";
import type { Logger } from "@shopmesh/runtime/logger.js";
import { changeWithEvent, enqueueEvent, type Tx } from "@shopmesh/runtime/outbox.js";
import { and, eq, sql } from "drizzle-orm";
import type { PaymentsDb } from "./db/database.js";
import { type PaymentRow, payments } from "./db/schema.js";
import { type PaymentProvider, ProviderTransientError } from "./provider.js";

export const SUBJECTS = {
  orderPlaced: "shop.orders.order_placed",
  orderCancelled: "shop.orders.order_cancelled",
  paymentSucceeded: "shop.payments.payment_succeeded",
  paymentFailed: "shop.payments.payment_failed",
  paymentRefunded: "shop.payments.payment_refunded",
} as const;

/** failure_reason values the service itself decides (declines carry the provider's). */
export const REASONS = {
  processingError: "payment processing error",
  cancelledBeforePayment: "order cancelled before payment",
  invalidTotal: "invalid order total",
} as const;

/** Durable consumer names; the suffix isolates a test run or a second stack on one NATS. */
export function durableNames(suffix = "") {
  return {
    orderPlaced: `payments-order_placed${suffix}`,
    orderCancelled: `payments-order_cancelled${suffix}`,
  };
}

export interface ChargeRetry {
  /** Provider calls per delivery before a transient error counts as a failure. */
  attempts: number;
  /** Wait after the first transient error; tripled after each further one. */
  baseDelayMs: number;
}

export const DEFAULT_CHARGE_RETRY: ChargeRetry = { attempts: 3, baseDelayMs: 100 };

// Redelivery of a failed handler. Long enough to outlast a database restart, and a
// cancel waiting for a charge to settle, before a message is dead-lettered.
const REDELIVERY = { maxDeliver: 10, backoffMs: [250, 1_000, 5_000, 15_000, 30_000, 60_000] };

export interface PaymentEventDeps {
  db: PaymentsDb;
  provider: PaymentProvider;
  logger: Logger;
  chargeRetry?: ChargeRetry;
}

/** A handler could not do its work yet; the message is redelivered later. */
export class PaymentBusyError extends Error {
  override name = "PaymentBusyError";
}

/** Starts both consumers; `stop()` stops both. */
export async function startPaymentConsumers(
  options: PaymentEventDeps & { bus: Bus; durableSuffix?: string },
): Promise<Consumer> {
  const { bus, logger } = options;
  const names = durableNames(options.durableSuffix);
  const placed = await startConsumer({
    bus,
    logger,
    durable: names.orderPlaced,
    subject: SUBJECTS.orderPlaced,
    handler: createOrderPlacedHandler(options, names.orderPlaced),
    ...REDELIVERY,
  });
  let cancelled: Consumer;
  try {
    cancelled = await startConsumer({
      bus,
      logger,
      durable: names.orderCancelled,
      subject: SUBJECTS.orderCancelled,
      handler: createOrderCancelledHandler(options, names.orderCancelled),
      ...REDELIVERY,
    });
  } catch (err) {
    await placed.stop();
    throw err;
  }
  return {
    async stop() {
      await Promise.all([placed.stop(), cancelled.stop()]);
    },
  };
}

/** What the provider (or the service, for nothing to charge) decided. */
type Outcome =
  | { status: "CAPTURED"; reference: string | null }
  | { status: "FAILED"; reference: string | null; reason: string; retryable: boolean };

/** Handles OrderPlaced for the consumer `consumer` (also its inbox name). */
export function createOrderPlacedHandler(deps: PaymentEventDeps, consumer: string) {
  const { db, provider } = deps;
  const retry = deps.chargeRetry ?? DEFAULT_CHARGE_RETRY;
  const log = deps.logger.child({ consumer });
  // Payments of orders placed at the same time are created in one transaction: the
  // inserts that came while one was in flight commit together (ADR 0010).
  const createPayment = commitTogether(db, insertPayment, (values) => String(values["orderId"]));

  /**
   * Charges `payment`; undefined when another worker settled it meanwhile. `counted`:
   * the row was just inserted with its first attempt counted.
   */
  const charge = async (
    payment: PaymentRow,
    token: string,
    counted: boolean,
  ): Promise<Outcome | undefined> => {
    for (let attempt = 1; ; attempt++) {
      // Counted before the call, so attempts include calls a crash cut short. The
      // condition doubles as a cheap check that nobody settled the payment meanwhile.
      const [claimed] =
        attempt === 1 && counted
          ? [{ attempts: payment.attempts }]
          : await db
              .update(payments)
              .set({ attempts: sql`${payments.attempts} + 1`, updatedAt: sql`now()` })
              .where(and(eq(payments.id, payment.id), eq(payments.status, "PENDING")))
              .returning({ attempts: payments.attempts });
      if (claimed === undefined) return undefined;
      try {
        const result = await provider.charge({
          idempotencyKey: payment.orderId,
          token,
          amount: payment.amount,
          currency: payment.currencyCode,
        });
        return result.status === "captured"
          ? { status: "CAPTURED", reference: result.reference }
          : {
              status: "FAILED",
              reference: result.reference,
              reason: result.reason,
              retryable: false,
            };
      } catch (err) {
        // Anything but a transient error is unexpected: let the message be redelivered
        // (and dead-lettered in the end) rather than guess whether money moved.
        if (!(err instanceof ProviderTransientError)) throw err;
        const context = { err, orderId: payment.orderId, attempts: claimed.attempts };
        if (attempt >= retry.attempts) {
          log.warn(context, "provider kept failing; payment failed");
          // The contract's `retryable`: placing the order again may well succeed.
          return {
            status: "FAILED",
            reference: null,
            reason: REASONS.processingError,
            retryable: true,
          };
        }
        const delayMs = retry.baseDelayMs * 3 ** (attempt - 1);
        log.warn({ ...context, retryInMs: delayMs }, "provider error; retrying the charge");
        await sleep(delayMs);
      }
    }
  };

  return async (msg: EventMessage): Promise<void> => {
    const event = decode(OrderPlacedSchema, msg, log);
    if (event === undefined) return;
    if (!isUuid(event.orderId) || !isUuid(event.userId)) {
      log.error({ eventId: msg.eventId }, "OrderPlaced without valid order and user ids; skipped");
      return;
    }
    const total = event.total;
    const validTotal =
      total !== undefined && total.amount >= 0n && /^[A-Z]{3}$/.test(total.currencyCode);
    const [inserted] = await createPayment({
      id: uuidv7(),
      orderId: event.orderId,
      userId: event.userId,
      // An unusable total is stored as 0 with no currency, and fails below.
      amount: validTotal ? total.amount : 0n,
      currencyCode: validTotal ? total.currencyCode : "",
      // A new payment that will be charged counts its first attempt here, in the
      // statement that creates it, rather than in one more of its own.
      attempts: validTotal && total.amount > 0n ? 1 : 0,
    });
    // Read back only when the row was there already (a redelivery, or a cancel first).
    const [payment] =
      inserted !== undefined
        ? [inserted]
        : await db.select().from(payments).where(eq(payments.orderId, event.orderId));
    if (payment === undefined) throw new Error(`payment of order ${event.orderId} vanished`);
    if (payment.status !== "PENDING") {
      // A duplicate (another event id for the same order), or the order was cancelled first.
      log.debug({ orderId: event.orderId, status: payment.status }, "payment already settled");
      return;
    }

    // Decided from the row, which the first delivery wrote, so that every delivery of
    // every event for this order charges the same amount or fails the same way.
    let outcome: Outcome | undefined;
    if (payment.currencyCode === "") {
      outcome = {
        status: "FAILED",
        reference: null,
        reason: REASONS.invalidTotal,
        retryable: false,
      };
    } else if (payment.amount === 0n) {
      // A free order: nothing to charge, and providers refuse zero-amount charges.
      outcome = { status: "CAPTURED", reference: null };
    } else {
      outcome = await charge(payment, event.paymentToken, inserted !== undefined);
    }
    if (outcome === undefined) return;

    // One statement settles the payment (PENDING → the outcome, only if still PENDING)
    // and writes its event only if it did; another worker that won wrote the event. It
    // goes out with COMMIT, after the inbox insert: two writes. The event is built from
    // the row as read (ids and amount never change).
    const settled = outcome;
    const ids = { paymentId: payment.id, orderId: payment.orderId, userId: payment.userId };
    const values = {
      id: payment.id,
      status: settled.status,
      reference: settled.reference,
      failureReason: settled.status === "FAILED" ? settled.reason : null,
    };
    let row: SettledRow | undefined;
    const settleAndAnnounce = async (tx: Tx) => {
      [row] =
        settled.status === "CAPTURED"
          ? await settle(tx, values, SUBJECTS.paymentSucceeded, PaymentSucceededSchema, {
              ...ids,
              amount: { currencyCode: payment.currencyCode, amount: payment.amount },
            })
          : await settle(tx, values, SUBJECTS.paymentFailed, PaymentFailedSchema, {
              ...ids,
              reason: settled.reason,
              retryable: settled.retryable,
            });
    };
    // Applied in batches with other orders' payments (never two of one order).
    await processOnce(
      db,
      consumer,
      inboxKey(msg.eventId),
      async (tx) => commitWith(() => settleAndAnnounce(tx)),
      undefined,
      payment.orderId,
    );
    if (row !== undefined) {
      log.info(
        {
          orderId: payment.orderId,
          paymentId: payment.id,
          status: row.status,
          attempts: row.attempts,
        },
        "payment settled",
      );
    }
  };
}

type SettledRow = { status: string; attempts: number };

/** The payment of an order, unless it has one: built once (every order runs it). */
const insertPayment = reusable((db) =>
  db
    .insert(payments)
    .values({
      id: sql.placeholder("id"),
      orderId: sql.placeholder("orderId"),
      userId: sql.placeholder("userId"),
      amount: sql.placeholder("amount"),
      currencyCode: sql.placeholder("currencyCode"),
      attempts: sql.placeholder("attempts"),
    })
    .onConflictDoNothing({ target: payments.orderId })
    .returning()
    .prepare("payments_insert"),
);

/**
 * PENDING → the outcome's status, only if still PENDING, and the event only if it moved:
 * one statement, built once.
 */
const settle = changeWithEvent<SettledRow>((db) =>
  db
    .update(payments)
    .set({
      status: sql`${sql.placeholder("status")}`,
      providerReference: sql`${sql.placeholder("reference")}`,
      failureReason: sql`${sql.placeholder("failureReason")}`,
      updatedAt: sql`now()`,
    })
    .where(and(eq(payments.id, sql.placeholder("id")), eq(payments.status, "PENDING")))
    .returning({ status: payments.status, attempts: payments.attempts })
    .getSQL(),
);

/** Handles OrderCancelled for the consumer `consumer` (also its inbox name). */
export function createOrderCancelledHandler(deps: PaymentEventDeps, consumer: string) {
  const { db, provider } = deps;
  const log = deps.logger.child({ consumer });

  return async (msg: EventMessage): Promise<void> => {
    const event = decode(OrderCancelledSchema, msg, log);
    if (event === undefined) return;
    if (!isUuid(event.orderId) || !isUuid(event.userId)) {
      log.error(
        { eventId: msg.eventId },
        "OrderCancelled without valid order and user ids; skipped",
      );
      return;
    }
    const { orderId } = event;
    const [payment] = await db.select().from(payments).where(eq(payments.orderId, orderId));

    if (payment === undefined) {
      // The cancel overtook OrderPlaced: a final FAILED payment makes the late
      // OrderPlaced a no-op, so the customer of a cancelled order is never charged.
      const applied = await processOnce(db, consumer, inboxKey(msg.eventId), async (tx) => {
        const inserted = await tx
          .insert(payments)
          .values({
            orderId,
            userId: event.userId,
            amount: 0n,
            currencyCode: "",
            status: "FAILED",
            failureReason: REASONS.cancelledBeforePayment,
          })
          .onConflictDoNothing({ target: payments.orderId })
          .returning({ id: payments.id });
        // OrderPlaced created it meanwhile: roll back and look again on redelivery.
        if (inserted.length === 0)
          throw new PaymentBusyError(`payment of order ${orderId} appeared`);
      });
      if (applied) log.info({ orderId }, "order cancelled before payment; it will not be charged");
      return;
    }

    switch (payment.status) {
      case "FAILED":
      case "REFUNDED":
        return;
      case "PENDING":
        // The charge is in flight (or its worker died and OrderPlaced will be redelivered).
        // Its outcome decides: redelivery brings us back once it has settled.
        throw new PaymentBusyError(`payment ${payment.id} of order ${orderId} is being charged`);
      case "CAPTURED":
        break;
    }

    // A free order captured nothing at the provider, so there is nothing to refund there.
    const refundReference =
      payment.providerReference === null
        ? null
        : (
            await provider.refund({
              idempotencyKey: `refund:${orderId}`,
              chargeId: payment.providerReference,
              amount: payment.amount,
            })
          ).reference;
    await processOnce(db, consumer, inboxKey(msg.eventId), async (tx) => {
      const [row] = await tx
        .update(payments)
        .set({ status: "REFUNDED", refundReference, updatedAt: sql`now()` })
        .where(and(eq(payments.id, payment.id), eq(payments.status, "CAPTURED")))
        .returning();
      if (row === undefined) return; // refunded by another worker, which wrote the event
      await enqueueEvent(tx, SUBJECTS.paymentRefunded, PaymentRefundedSchema, {
        paymentId: row.id,
        orderId: row.orderId,
        userId: row.userId,
        amount: { currencyCode: row.currencyCode, amount: row.amount },
      });
      log.info({ orderId, paymentId: row.id }, "payment refunded");
    });
  };
}

/**
 * The message's payload, or undefined (logged) when it is not the expected message:
 * no redelivery can fix it, so it is skipped rather than retried until dead-lettered.
 */
function decode<Desc extends DescMessage>(
  schema: Desc,
  msg: EventMessage,
  log: Logger,
): MessageShape<Desc> | undefined {
  try {
    return fromBinary(schema, msg.data);
  } catch (err) {
    log.error({ err, subject: msg.subject, eventId: msg.eventId }, "undecodable event; skipped");
    return undefined;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function isUuid(s: string): boolean {
  return UUID.test(s);
}

/**
 * The inbox key (a uuid column) of an event: its id, which the outbox made the
 * Nats-Msg-Id. A message published without one is keyed by a hash of the id the
 * runtime gave it (stream and sequence), which is just as stable across redeliveries.
 */
function inboxKey(eventId: string): string {
  if (isUuid(eventId)) return eventId;
  const h = createHash("sha256").update(eventId).digest("hex");
  return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20, 32)].join(
    "-",
  );
}
