/**
 * `startStack()`: orders for one test file, standing on the real services it
 * calls — identity and catalog, each in-process on port 0 with a fresh database on
 * the real PostgreSQL (PG_URL) — and on the real NATS JetStream (NATS_URL).
 *
 * - Tokens are minted by identity itself (Register + Login), and orders verifies
 *   them against identity's KeyService, as deployed. The catalog's own verifier uses
 *   test keys: InventoryService checks no user token.
 * - Subjects are fixed, so a run isolates itself by its durable names
 *   (`orders-test-<run>-…`) and by looking only at its own orders; events of other
 *   runs reach its consumers too and are ignored as unknown orders.
 * - Payments is not started: tests publish PaymentSucceeded / PaymentFailed /
 *   PaymentRefunded into the stream themselves — that is the contract.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { create, fromBinary, type Message } from "@bufbuild/protobuf";
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { openCatalogDatabase } from "@shopmesh/catalog/db/database.js";
import { products, reservationLines, reservations } from "@shopmesh/catalog/db/schema.js";
import { createCatalogService } from "@shopmesh/catalog/service.js";
import { insertProduct } from "@shopmesh/catalog/test/fixtures.js";
import { InventoryService } from "@shopmesh/gen/shop/catalog/v1/inventory_pb.js";
import { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import {
  type OrderCancelled,
  OrderCancelledSchema,
  type OrderConfirmed,
  OrderConfirmedSchema,
  type OrderPlaced,
  OrderPlacedSchema,
} from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { type Order, OrderService } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import {
  PaymentFailedSchema,
  PaymentRefundedSchema,
  PaymentSucceededSchema,
} from "@shopmesh/gen/shop/payments/v1/events_pb.js";
import { ensureAdmin } from "@shopmesh/identity/admin.js";
import { openIdentityDatabase } from "@shopmesh/identity/db/database.js";
import { users } from "@shopmesh/identity/db/schema.js";
import { loadSigningKeys } from "@shopmesh/identity/keys.js";
import { createIdentityService } from "@shopmesh/identity/service.js";
import { createTokenVerifier, jwksFromKeyService } from "@shopmesh/runtime/auth.js";
import {
  connectBus,
  type EventMessage,
  STREAM,
  startConsumer,
  startOutboxRelay,
} from "@shopmesh/runtime/bus.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createGrpcServer, type GrpcServer } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import {
  bearer,
  createTestKeys,
  createTestVerifier,
  openTestDatabase,
  publishEvent,
  startTestServer,
  TEST_AUDIENCE,
  TEST_ISSUER,
} from "@shopmesh/runtime/testing.js";
import { and, eq, inArray, sql } from "drizzle-orm";
import { openOrdersDatabase } from "../src/db/database.js";
import { orders, outbox } from "../src/db/schema.js";
import type { IdentityClient } from "../src/downstream.js";
import {
  PAYMENT_FAILED,
  PAYMENT_REFUNDED,
  PAYMENT_SUCCEEDED,
  startOrderConsumers,
} from "../src/events.js";
import { createOrderService } from "../src/service.js";
import { ORDER_CANCELLED, ORDER_CONFIRMED, ORDER_PLACED } from "../src/state-machine.js";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const PASSWORD = "correct horse battery staple";
const logger = createLogger("orders-test", "silent");

/** The events orders publishes, by subject, for decoding outbox rows and bus messages. */
const ORDER_EVENTS = {
  [ORDER_PLACED]: OrderPlacedSchema,
  [ORDER_CONFIRMED]: OrderConfirmedSchema,
  [ORDER_CANCELLED]: OrderCancelledSchema,
} as const;
type OrderEventSubject = keyof typeof ORDER_EVENTS;
type OrderEventOf<S extends OrderEventSubject> = S extends typeof ORDER_PLACED
  ? OrderPlaced
  : S extends typeof ORDER_CONFIRMED
    ? OrderConfirmed
    : OrderCancelled;

export async function startStack() {
  const run = randomBytes(4).toString("hex");
  const closers: (() => Promise<unknown> | unknown)[] = [];

  // identity, real: it mints the tokens and answers GetUser.
  const identityDb = await openTestDatabase("orders_identity", (url) =>
    openIdentityDatabase(url, { max: 5 }),
  );
  closers.push(() => identityDb.close());
  const identityDatabase = identityDb.database;
  const { server: identityServer, address: identityAddr } = await startTestServer(
    createIdentityService({
      db: identityDatabase.db,
      keys: await loadSigningKeys(identityDatabase.db),
      issuer: TEST_ISSUER,
      audience: TEST_AUDIENCE,
    }).registrations,
    logger,
  );
  closers.push(() => identityServer.shutdown());
  const identityClient = createGrpcClient(IdentityService, identityAddr);
  closers.push(() => identityClient.close());
  const adminEmail = `admin-${run}@example.com`;
  await ensureAdmin(identityDatabase.db, { email: adminEmail, password: PASSWORD });

  // catalog, real: ReserveStock / ReleaseStock against its own database.
  const catalogDb = await openTestDatabase("orders_catalog", (url) =>
    openCatalogDatabase(url, { max: 20 }),
  );
  closers.push(() => catalogDb.close());
  const catalogDatabase = catalogDb.database;
  const catalogServices = createCatalogService({
    db: catalogDatabase.db,
    verifier: createTestVerifier(await createTestKeys()),
  });
  const catalogStarted = await startTestServer(catalogServices, logger);
  let catalogServer: GrpcServer | undefined = catalogStarted.server;
  const catalogPort = catalogStarted.port;
  closers.push(() => catalogServer?.shutdown());

  // orders, the service under test, wired as main.ts wires it.
  const ordersDb = await openTestDatabase("orders", (url) => openOrdersDatabase(url, { max: 20 }));
  closers.push(() => ordersDb.close());
  const ordersDatabase = ordersDb.database;
  const bus = await connectBus({ url: NATS_URL, name: `orders-test-${run}`, logger });
  closers.push(() => bus.close());
  const relay = startOutboxRelay({ sql: ordersDatabase.sql, bus, logger, pollMs: 100 });
  closers.push(() => relay.stop());
  const identityGrpc = createGrpcClient(IdentityService, identityAddr, { timeoutMs: 3_000 });
  // The real client, counting orders' GetUser calls (USER_CHECK_TTL_MS remembers a yes).
  let identityGetUserCalls = 0;
  const identity: IdentityClient = {
    getUser: ((...args: Parameters<IdentityClient["getUser"]>) => {
      identityGetUserCalls++;
      return identityGrpc.getUser(...args);
    }) as IdentityClient["getUser"],
  };
  const inventory = createGrpcClient(InventoryService, `127.0.0.1:${catalogPort}`, {
    timeoutMs: 3_000,
    // Reconnect quickly after the catalog-outage test brings the catalog back.
    channelOptions: {
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 500,
    },
  });
  closers.push(() => {
    identityGrpc.close();
    inventory.close();
  });
  const durablePrefix = `orders-test-${run}`;
  const startConsumers = () =>
    startOrderConsumers({
      db: ordersDatabase.db,
      bus,
      inventory,
      logger,
      durablePrefix,
      backoffMs: [200, 500, 1_000, 2_000, 2_000],
    });
  let consumers = await startConsumers();
  const deleteDurables = async (names: string[]) => {
    for (const name of names) await bus.jsm.consumers.delete(STREAM, name).catch(() => false);
  };
  closers.push(async () => {
    await consumers.stop();
    await deleteDurables(consumers.durables);
  });
  const { server, address } = await startTestServer(
    [
      createOrderService({
        db: ordersDatabase.db,
        verifier: createTokenVerifier({
          issuer: TEST_ISSUER,
          audience: TEST_AUDIENCE,
          fetchJwks: jwksFromKeyService(identityAddr),
        }),
        identity,
        inventory,
        userCheckTtlMs: 60_000, // the default
      }),
    ],
    logger,
  );
  closers.push(() => server.shutdown());
  const client = createGrpcClient(OrderService, address, { timeoutMs: 15_000 });
  closers.push(() => client.close());

  // What orders published to JetStream, read back by consumers of this run.
  const published: EventMessage[] = [];
  const seenDurables: string[] = [];
  for (const subject of Object.keys(ORDER_EVENTS)) {
    const durable = `${durablePrefix}-seen-${subject.split(".").at(-1)}`;
    seenDurables.push(durable);
    const seen = await startConsumer({
      bus,
      durable,
      subject,
      logger,
      handler: async (m) => {
        published.push(m);
      },
    });
    closers.push(async () => {
      await seen.stop();
      await deleteDurables([durable]);
    });
  }

  const decode = <S extends OrderEventSubject>(subject: S, data: Uint8Array) =>
    fromBinary(ORDER_EVENTS[subject] as GenMessage<Message>, data) as OrderEventOf<S>;

  const stamp = () => ({ eventId: randomUUID(), occurTime: timestampFromDate(new Date()) });

  async function reservationsOf(productId: string, status: "reserved" | "released") {
    const rows = await catalogDatabase.db
      .select({ orderId: reservations.orderId })
      .from(reservations)
      .innerJoin(reservationLines, eq(reservationLines.orderId, reservations.orderId))
      .where(and(eq(reservationLines.productId, productId), eq(reservations.status, status)));
    return rows.map((r) => r.orderId);
  }

  return {
    client,
    identityClient,
    /** GetUser calls orders made to identity so far. */
    identityGetUserCalls: () => identityGetUserCalls,
    /** The catalog's InventoryService, as orders calls it. */
    inventory,
    bus,
    ordersDb: ordersDatabase.db,
    catalogDb: catalogDatabase.db,
    relay,
    get consumers() {
      return consumers;
    },

    /** A fresh customer, registered and logged in with identity. */
    async customer() {
      const email = `customer-${randomBytes(5).toString("hex")}@example.com`;
      const { user } = await identityClient.register({ email, password: PASSWORD });
      const { accessToken } = await identityClient.login({ email, password: PASSWORD });
      if (user === undefined) throw new Error("register returned no user");
      return { userId: user.id, auth: bearer(accessToken) };
    },

    /** The admin account's credentials (logged in with identity). */
    async admin() {
      const { accessToken, user } = await identityClient.login({
        email: adminEmail,
        password: PASSWORD,
      });
      return { userId: user?.id ?? "", auth: bearer(accessToken) };
    },

    /** A product straight in the catalog's database. */
    insertProduct: (values?: Parameters<typeof insertProduct>[1]) =>
      insertProduct(catalogDatabase.db, values),

    async stockOf(productId: string) {
      const [row] = await catalogDatabase.db
        .select({ stock: products.stock })
        .from(products)
        .where(eq(products.id, productId));
      return row?.stock;
    },

    /** Order ids of the catalog reservations still held that include `productId`. */
    heldReservations: (productId: string) => reservationsOf(productId, "reserved"),
    /** Order ids of the catalog reservations of `productId` given back. */
    releasedReservations: (productId: string) => reservationsOf(productId, "released"),

    /** Deletes a user from identity's database (their token stays valid until it expires). */
    async deleteUser(userId: string) {
      await identityDatabase.db.delete(users).where(eq(users.id, userId));
    },

    /** Order rows of a user, straight from the orders database. */
    async orderRowsOf(userId: string) {
      return ordersDatabase.db.select().from(orders).where(eq(orders.userId, userId));
    },

    /** Every outbox row of the orders database (all events orders ever wrote here). */
    async outboxCount() {
      const [row] = await ordersDatabase.db.select({ n: sql<number>`count(*)::int` }).from(outbox);
      return row?.n ?? 0;
    },

    /** Events in the orders outbox about `orderId`, decoded, in write order. */
    async outboxEventsOf<S extends OrderEventSubject>(orderId: string, subject: S) {
      const rows = await ordersDatabase.db
        .select()
        .from(outbox)
        .where(eq(outbox.subject, subject))
        .orderBy(outbox.seq);
      return rows
        .map((r) => ({ row: r, event: decode(subject, r.payload) }))
        .filter((e) => e.event.orderId === orderId);
    },

    /** Events about `orderId` that reached JetStream, decoded. */
    publishedEventsOf<S extends OrderEventSubject>(orderId: string, subject: S) {
      return published.flatMap((m) => {
        if (m.subject !== subject) return [];
        let event: OrderEventOf<S>;
        try {
          event = decode(subject, m.data);
        } catch {
          return []; // another run's test publishing something else on the subject
        }
        return event.orderId === orderId ? [{ eventId: m.eventId, event }] : [];
      });
    },

    /** Publishes PaymentSucceeded for `order`; returns the event id. */
    async paymentSucceeded(
      order: Order,
      paymentId: string = randomUUID(),
      headers: Record<string, string> = {},
    ) {
      const event = create(PaymentSucceededSchema, {
        ...stamp(),
        paymentId,
        orderId: order.id,
        userId: order.userId,
        amount: order.total,
      });
      // Published as payments would: Nats-Msg-Id = the event id.
      await publishEvent(bus, PAYMENT_SUCCEEDED, PaymentSucceededSchema, event, headers);
      return event.eventId;
    },

    async paymentFailed(order: Order, reason = "card_declined") {
      const event = create(PaymentFailedSchema, {
        ...stamp(),
        paymentId: randomUUID(),
        orderId: order.id,
        userId: order.userId,
        reason,
      });
      await publishEvent(bus, PAYMENT_FAILED, PaymentFailedSchema, event);
      return event.eventId;
    },

    async paymentRefunded(order: Order, paymentId: string) {
      const event = create(PaymentRefundedSchema, {
        ...stamp(),
        paymentId,
        orderId: order.id,
        userId: order.userId,
        amount: order.total,
      });
      await publishEvent(bus, PAYMENT_REFUNDED, PaymentRefundedSchema, event);
      return event.eventId;
    },

    /** Messages of this run's `<event>` consumer that failed and wait to be delivered again. */
    async redeliveriesPending(event: "payment_succeeded" | "payment_failed" | "payment_refunded") {
      const info = await bus.jsm.consumers.info(STREAM, `${durablePrefix}-${event}`);
      return info.num_redelivered;
    },

    /** True once this run's consumers have nothing pending or unacknowledged. */
    async consumersIdle() {
      for (const name of consumers.durables) {
        const info = await bus.jsm.consumers.info(STREAM, name);
        if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
      }
      return true;
    },

    /**
     * Deletes the durables and starts them again under the same names: JetStream
     * delivers every payment event in the stream again, those already applied
     * included — a redelivery of everything, through the real bus.
     */
    async replayAllEvents() {
      await consumers.stop();
      await deleteDurables(consumers.durables);
      consumers = await startConsumers();
    },

    /** Stops the catalog's server (the orders client sees UNAVAILABLE). */
    async catalogDown() {
      await catalogServer?.shutdown();
      catalogServer = undefined;
    },

    /** Serves the catalog again on the same port. */
    async catalogUp() {
      catalogServer = createGrpcServer({ logger, services: catalogServices });
      await catalogServer.listen(catalogPort, "127.0.0.1");
    },

    /** Orders in the orders database among `ids`. */
    async countOrders(ids: string[]) {
      if (ids.length === 0) return 0;
      return (await ordersDatabase.db.select().from(orders).where(inArray(orders.id, ids))).length;
    },

    async stop() {
      for (const close of closers.reverse()) await close();
    },
  };
}

export type Stack = Awaited<ReturnType<typeof startStack>>;
