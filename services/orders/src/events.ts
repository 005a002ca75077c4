/**
 * `startOrderConsumers`: the payment outcomes that move the order saga on, one
 * durable JetStream pull consumer per subject:
 *
 *   shop.payments.payment_succeeded → PENDING_PAYMENT → CONFIRMED, OrderConfirmed
 *   shop.payments.payment_failed    → PENDING_PAYMENT → CANCELLED, stock released, OrderCancelled
 *   shop.payments.payment_refunded  → a history entry; the order stays CANCELLED
 *
 * Each effect runs in `processOnce`: the event id goes into the inbox in the same
 * transaction, so a redelivered event changes nothing. A handler that throws (e.g.
 * the catalog is down while releasing stock) rolls everything back, inbox row
 * included, and the bus redelivers it with backoff.
 */
import { fromBinary, type Message } from "@bufbuild/protobuf";
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";
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
import { childWhenUsed, type Logger } from "@shopmesh/runtime/logger.js";
import type { Tx } from "@shopmesh/runtime/outbox.js";
import type { OrdersDb } from "./db/database.js";
import type { OrderRow } from "./db/schema.js";
import type { InventoryClient } from "./downstream.js";
import { lockOrder } from "./order-view.js";
import { cancelOrder, confirmOrder, noteRefund } from "./state-machine.js";

export const PAYMENT_SUCCEEDED = "shop.payments.payment_succeeded";
export const PAYMENT_FAILED = "shop.payments.payment_failed";
export const PAYMENT_REFUNDED = "shop.payments.payment_refunded";

export interface OrderConsumersDeps {
  db: OrdersDb;
  bus: Bus;
  inventory: InventoryClient;
  logger: Logger;
  /**
   * Durable names are `<prefix>-<event>`, e.g. "orders-payment_succeeded". Every
   * replica uses the same names, so they share the work; another prefix gives an
   * independent set (tests, or two stacks on one NATS server).
   */
  durablePrefix?: string;
  /** Passed to startConsumer (tests shorten the redelivery backoff). */
  backoffMs?: number[];
}

export interface OrderConsumers {
  /** The durable consumer names, e.g. to delete them. */
  durables: string[];
  stop(): Promise<void>;
}

/** Every payment event names its order. */
type OrderEvent = Message & { orderId: string };

/**
 * What one event does to its order, locked for the transaction; it may end the
 * transaction by returning `commitWith(...)`'s answer (processOnce). `context.log` is
 * made when first read: read it only to write a line.
 */
type Effect<E extends OrderEvent> = (
  tx: Tx,
  order: OrderRow,
  event: E,
  context: { log: Logger },
) => Promise<unknown>;

export async function startOrderConsumers(deps: OrderConsumersDeps): Promise<OrderConsumers> {
  const { db, bus, inventory, logger } = deps;
  const prefix = deps.durablePrefix ?? "orders";
  const consumers: Consumer[] = [];
  const durables: string[] = [];

  /**
   * One durable consumer of `subject`: decode, then apply to the order, once; `batched`:
   * in a transaction with other orders' events (event-batches.ts), for an effect that
   * only writes to this database. One that calls another service goes alone: a batch
   * waits for its slowest effect, and every event of this database waits for the batch.
   */
  async function consume<E extends OrderEvent>(
    event: string,
    subject: string,
    schema: GenMessage<E>,
    apply: Effect<E>,
    batched = true,
  ) {
    const durable = `${prefix}-${event}`;
    const handler = async (msg: EventMessage) => {
      const decoded = fromBinary(schema, msg.data);
      const orderId = decoded.orderId.toLowerCase();
      const log = childWhenUsed(logger, {
        consumer: durable,
        event_id: msg.eventId,
        order_id: orderId,
      });
      const context = {
        get log() {
          return log();
        },
      };
      await processOnce(
        db,
        durable,
        msg.eventId,
        async (tx, order) => {
          if (order === undefined) {
            // Orders are committed before OrderPlaced is even published, so payments
            // cannot know an order we lack: the event belongs to another deployment.
            context.log.warn("event for an unknown order ignored");
            return;
          }
          return apply(tx, order, decoded, context);
        },
        // The order, locked, read in the same write as the inbox insert.
        (tx: Tx) => lockOrder(tx, orderId),
        // Applied in batches with other orders' events (never two of one order).
        batched ? orderId : undefined,
      );
    };
    const backoff = deps.backoffMs === undefined ? {} : { backoffMs: deps.backoffMs };
    consumers.push(await startConsumer({ bus, durable, subject, handler, logger, ...backoff }));
    durables.push(durable);
  }

  await consume(
    "payment_succeeded",
    PAYMENT_SUCCEEDED,
    PaymentSucceededSchema,
    async (tx, order, event, context) => {
      if (order.status === "PENDING_PAYMENT") return confirmOrder(tx, order, event.paymentId);
      // CANCELLED: the user cancelled while the payment was in flight. Nothing to do
      // here: payments refunds the capture when it sees OrderCancelled.
      // CONFIRMED: another success report for the same order, already applied.
      context.log.info(
        { status: order.status },
        "payment succeeded for an order no longer pending",
      );
    },
  );

  await consume(
    "payment_failed",
    PAYMENT_FAILED,
    PaymentFailedSchema,
    async (tx, order, event, context) => {
      if (order.status !== "PENDING_PAYMENT") {
        context.log.info({ status: order.status }, "payment failed for an order no longer pending");
        return;
      }
      // Releases the stock (compensation of ReserveStock) before the status changes:
      // a catalog outage throws, everything rolls back and the event is redelivered.
      await cancelOrder(tx, inventory, order, event.reason || "payment failed");
    },
    false, // ReleaseStock is a call to catalog
  );

  await consume("payment_refunded", PAYMENT_REFUNDED, PaymentRefundedSchema, async (tx, order) => {
    await noteRefund(tx, order);
  });

  return {
    durables,
    async stop() {
      await Promise.all(consumers.map((c) => c.stop()));
    },
  };
}
