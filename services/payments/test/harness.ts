/**
 * `startPayments()`: the payments service for one test file — a fresh database on the
 * real PostgreSQL (PG_URL), the committed migrations, the real gRPC server on port 0,
 * tokens signed by test keys and, when asked, the real consumers on the real NATS
 * (NATS_URL) with durable names of their own.
 *
 * The SHOP stream and its subjects are shared with every other test run and service,
 * so a run's consumers first skip what the stream already holds (`skipHistory`), and
 * orders carry random ids. No outbox relay runs here: consumers also see other runs'
 * live orders, and events for those must not reach the shared stream.
 */
import { randomUUID } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { OrderCancelledSchema, OrderPlacedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import {
  type PaymentFailed,
  PaymentFailedSchema,
  type PaymentRefunded,
  PaymentRefundedSchema,
  type PaymentSucceeded,
  PaymentSucceededSchema,
} from "@shopmesh/gen/shop/payments/v1/events_pb.js";
import { PaymentService } from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { type Bus, type Consumer, connectBus, STREAM } from "@shopmesh/runtime/bus.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import {
  bearer,
  createTestKeys,
  createTestVerifier,
  durableSuffix,
  openTestDatabase,
  publishEvent,
  startTestServer,
} from "@shopmesh/runtime/testing.js";
import { asc, eq } from "drizzle-orm";
import { expect } from "vitest";
import { openPaymentsDatabase } from "../src/db/database.js";
import { outbox, type PaymentStatus, payments } from "../src/db/schema.js";
import { durableNames, SUBJECTS, startPaymentConsumers } from "../src/events.js";
import {
  type ChargeRequest,
  type ChargeResult,
  createSimulatedProvider,
  type PaymentProvider,
} from "../src/provider.js";
import { createPaymentService } from "../src/service.js";

export const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";

export const logger = createLogger("payments-test", process.env["TEST_LOG_LEVEL"] ?? "silent");

/**
 * Creates `durable` on the shared stream exactly as the runtime's startConsumer does
 * (deliver all), then acknowledges everything already pending, so the consumer starts
 * from now. startConsumer then finds it with the same deliver policy and takes it over.
 */
export async function skipHistory(bus: Bus, durable: string, subject: string): Promise<void> {
  await bus.jsm.consumers.add(STREAM, {
    durable_name: durable,
    ack_policy: "explicit",
    deliver_policy: "all",
    filter_subject: subject,
  });
  const consumer = await bus.js.consumers.get(STREAM, durable);
  while ((await consumer.info()).num_pending > 0) {
    const batch = await consumer.fetch({ max_messages: 500, expires: 2_000 });
    for await (const m of batch) await m.ackAck();
  }
}

/**
 * The simulator behind a seam tests can bend: `onCharge` may wrap a charge (delay it,
 * fail after it) for one order, leaving every other order alone.
 */
function createTestProvider() {
  const simulator = createSimulatedProvider();
  const chargeHooks = new Map<
    string,
    (req: ChargeRequest, next: () => Promise<ChargeResult>) => Promise<ChargeResult>
  >();
  const calls: ChargeRequest[] = [];
  const provider: PaymentProvider = {
    charge(req) {
      calls.push(req);
      const hook = chargeHooks.get(req.idempotencyKey);
      return hook ? hook(req, () => simulator.charge(req)) : simulator.charge(req);
    },
    refund: (req) => simulator.refund(req),
  };
  return {
    simulator,
    provider,
    /** Wraps the charges of one order (idempotency key = order id). */
    onCharge: (orderId: string, hook: Parameters<typeof chargeHooks.set>[1]) =>
      chargeHooks.set(orderId, hook),
    /** Charge calls made for `orderId`, including retries and repeats. */
    chargeCalls: (orderId: string) => calls.filter((c) => c.idempotencyKey === orderId).length,
  };
}

export async function startPayments(options: { consumers?: boolean } = {}) {
  const testDb = await openTestDatabase("payments", (url) =>
    openPaymentsDatabase(url, { max: 20 }),
  );
  const { database } = testDb;
  const keys = await createTestKeys();
  const { server, address } = await startTestServer(
    createPaymentService({ db: database.db, verifier: createTestVerifier(keys) }),
    logger,
  );
  const client = createGrpcClient(PaymentService, address, { timeoutMs: 15_000 });
  const test = createTestProvider();

  const suffix = durableSuffix();
  const names = durableNames(suffix);
  let bus: Bus | undefined;
  let consumers: Consumer | undefined;
  if (options.consumers) {
    bus = await connectBus({ url: NATS_URL, name: `payments-test${suffix}`, logger });
    await skipHistory(bus, names.orderPlaced, SUBJECTS.orderPlaced);
    await skipHistory(bus, names.orderCancelled, SUBJECTS.orderCancelled);
    consumers = await startPaymentConsumers({
      db: database.db,
      bus,
      provider: test.provider,
      logger,
      durableSuffix: suffix,
    });
  }
  const needBus = () => {
    if (bus === undefined) throw new Error("started without consumers");
    return bus;
  };

  /** Publishes OrderPlaced as orders' relay would (Nats-Msg-Id = event id). */
  const placeOrder = async (o: {
    token: string;
    orderId?: string;
    userId?: string;
    amount?: bigint;
    currencyCode?: string;
    eventId?: string;
  }) => {
    const order = {
      eventId: o.eventId ?? randomUUID(),
      orderId: o.orderId ?? randomUUID(),
      userId: o.userId ?? randomUUID(),
    };
    const message = create(OrderPlacedSchema, {
      ...order,
      total: { currencyCode: o.currencyCode ?? "USD", amount: o.amount ?? 4_999n },
      paymentToken: o.token,
    });
    const ack = await publishEvent(needBus(), SUBJECTS.orderPlaced, OrderPlacedSchema, message);
    return { ...order, duplicate: ack.duplicate };
  };

  /** Publishes OrderCancelled as orders' relay would. */
  const cancelOrder = async (o: { orderId: string; userId: string }) => {
    // Never an OrderPlaced's id: JetStream would drop the cancel as a duplicate message.
    const eventId = randomUUID();
    const message = create(OrderCancelledSchema, {
      eventId,
      orderId: o.orderId,
      userId: o.userId,
      reason: "cancelled by the customer",
    });
    await publishEvent(needBus(), SUBJECTS.orderCancelled, OrderCancelledSchema, message);
    return eventId;
  };

  const paymentsOf = (orderId: string) =>
    database.db.select().from(payments).where(eq(payments.orderId, orderId));

  /** The order's only payment once it has `status` (fails after the timeout). */
  const waitForPayment = async (orderId: string, status: PaymentStatus, timeout = 20_000) => {
    await expect
      .poll(async () => (await paymentsOf(orderId))[0]?.status, { timeout, interval: 25 })
      .toBe(status);
    const rows = await paymentsOf(orderId);
    expect(rows).toHaveLength(1);
    return rows[0] as NonNullable<(typeof rows)[0]>;
  };

  /** The events in the outbox about `orderId`, in order, decoded. */
  const eventsOf = async (orderId: string) => {
    const rows = await database.db.select().from(outbox).orderBy(asc(outbox.seq));
    const decoded = rows.map((r) => ({
      subject: r.subject,
      id: r.id,
      headers: r.headers,
      event: decodeEvent(r.subject, r.payload),
    }));
    return decoded.filter((e) => e.event.orderId === orderId);
  };

  return {
    database,
    client,
    keys,
    bearer,
    names,
    provider: test,
    placeOrder,
    cancelOrder,
    paymentsOf,
    waitForPayment,
    eventsOf,
    bus: needBus,
    async stop() {
      await consumers?.stop();
      if (bus !== undefined) {
        for (const name of Object.values(names)) {
          await bus.jsm.consumers.delete(STREAM, name).catch(() => undefined);
        }
        await bus.close();
      }
      client.close();
      await server.shutdown();
      await testDb.close();
    },
  };
}

export type Payments = Awaited<ReturnType<typeof startPayments>>;

type PaymentEvent = PaymentSucceeded | PaymentFailed | PaymentRefunded;

function decodeEvent(subject: string, payload: Uint8Array): PaymentEvent {
  switch (subject) {
    case SUBJECTS.paymentSucceeded:
      return fromBinary(PaymentSucceededSchema, payload);
    case SUBJECTS.paymentFailed:
      return fromBinary(PaymentFailedSchema, payload);
    case SUBJECTS.paymentRefunded:
      return fromBinary(PaymentRefundedSchema, payload);
    default:
      throw new Error(`unexpected event subject ${subject}`);
  }
}
