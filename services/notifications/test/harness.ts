/**
 * `startNotifications()`: the notifications service for one test file — a fresh
 * database on the real PostgreSQL (PG_URL), the committed migrations, the real NATS
 * (NATS_URL) with consumers under durable names unique to this run, the real gRPC
 * server on port 0, the runtime's grpc-js client, and tokens signed by test keys.
 *
 * The SHOP stream and its subjects are shared with every other test run, so tests use
 * fresh user ids and assert only on those; `stop()` deletes this run's consumers.
 */
import { randomUUID } from "node:crypto";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { NotificationService } from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { connectBus, type EventMessage, STREAM } from "@shopmesh/runtime/bus.js";
import { type CallOptions, createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import {
  bearer,
  createTestKeys,
  createTestVerifier,
  openTestDatabase,
  publishEvent,
  startTestServer,
  durableSuffix as uniqueSuffix,
} from "@shopmesh/runtime/testing.js";
import { asc, eq } from "drizzle-orm";
import { expect } from "vitest";
import { DEFAULT_SMTP_FROM } from "../src/config.js";
import { openNotificationsDatabase } from "../src/db/database.js";
import { deliveryAttempts, notifications } from "../src/db/schema.js";
import { createDelivery, type Delivery } from "../src/delivery.js";
import { createDispatcher, type DispatcherOptions } from "../src/dispatcher.js";
import { createEventHandler, EVENT_ROUTES, startNotificationConsumers } from "../src/events.js";
import { createNotificationFeed } from "../src/feed.js";
import { createNotificationService } from "../src/service.js";

export const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";

export interface HarnessOptions {
  /** Deliver through this SMTP server instead of locally. */
  smtpUrl?: string;
  /** Replaces the delivery built from smtpUrl. */
  delivery?: Delivery;
  /** Start the NATS consumers (default true). Off, tests call `handle` directly. */
  consumers?: boolean;
  /** Retry settings; defaults here are short so failure paths run in milliseconds. */
  dispatcher?: Partial<Pick<DispatcherOptions, "maxAttempts" | "backoffMs" | "attemptTimeoutMs">>;
}

export async function startNotifications(options: HarnessOptions = {}) {
  const testDb = await openTestDatabase("notifications", (url) => openNotificationsDatabase(url));
  const { database } = testDb;
  const logger = createLogger("notifications-test", "silent");
  const bus = await connectBus({ url: NATS_URL, name: "notifications-test", logger });
  const delivery =
    options.delivery ??
    createDelivery({
      smtpUrl: options.smtpUrl,
      smtpFrom: DEFAULT_SMTP_FROM,
      logger,
      timeoutMs: 2_000,
    });
  const dispatcher = createDispatcher({
    db: database.db,
    delivery,
    logger,
    maxAttempts: 3,
    backoffMs: [20, 50],
    attemptTimeoutMs: 3_000,
    ...options.dispatcher,
  });
  const deps = { db: database.db, dispatcher, logger };
  const durableSuffix = uniqueSuffix("-t");
  const consumers =
    options.consumers === false
      ? undefined
      : await startNotificationConsumers({ bus, deps, durableSuffix });

  const keys = await createTestKeys();
  const verifier = createTestVerifier(keys);
  const feed = createNotificationFeed(database.sql, logger);
  const { server, address } = await startTestServer(
    createNotificationService({ db: database.db, verifier, feed }),
    logger,
  );
  const client = createGrpcClient(NotificationService, address, { timeoutMs: 15_000 });

  /** Call options carrying a fresh customer token for `userId`. */
  const as = async (userId: string): Promise<CallOptions> =>
    bearer(await keys.sign(userId, ["customer"]));

  /** Publishes an event the way a producer's outbox relay does: Nats-Msg-Id = event id. */
  const publish = async <D extends DescMessage>(
    subject: string,
    schema: D,
    init: MessageInitShape<D>,
    eventId: string = randomUUID(),
  ) => {
    const message = create(schema, {
      ...(init as object),
      eventId,
    } as unknown as MessageInitShape<D>);
    const ack = await publishEvent(bus, subject, schema, message);
    return { eventId, duplicate: ack.duplicate };
  };

  /** Runs an event through the service's own handler, as its consumer would, without NATS. */
  const handle = async <D extends DescMessage>(
    subject: string,
    schema: D,
    init: MessageInitShape<D>,
    eventId: string = randomUUID(),
    handlerDeps = deps,
  ) => {
    const r = EVENT_ROUTES.find((x) => x.subject === subject);
    if (r === undefined) throw new Error(`no route for ${subject}`);
    const message = create(schema, {
      ...(init as object),
      eventId,
    } as unknown as MessageInitShape<D>);
    const msg: EventMessage = {
      subject,
      data: toBinary(schema, message),
      eventId,
      headers: {},
      deliveryCount: 1,
    };
    await createEventHandler(handlerDeps, `notifications-${r.name}${durableSuffix}`, r)(msg);
    return { eventId, msg };
  };

  /** A user's notifications, oldest first, straight from the table. */
  const rowsOf = (userId: string) =>
    database.db
      .select()
      .from(notifications)
      .where(eq(notifications.userId, userId))
      .orderBy(asc(notifications.createdAt), asc(notifications.id));

  /** Waits until `userId` has `count` notifications (consumers are asynchronous). */
  const waitForRows = async (userId: string, count: number, timeout = 20_000) => {
    await expect.poll(async () => (await rowsOf(userId)).length, { timeout }).toBe(count);
    return rowsOf(userId);
  };

  const attemptsOf = (notificationId: string) =>
    database.db
      .select()
      .from(deliveryAttempts)
      .where(eq(deliveryAttempts.notificationId, notificationId))
      .orderBy(asc(deliveryAttempts.attempt));

  return {
    database,
    databaseUrl: testDb.url,
    bus,
    client,
    address,
    keys,
    verifier,
    feed,
    server,
    deps,
    dispatcher,
    durableSuffix,
    as,
    publish,
    handle,
    rowsOf,
    waitForRows,
    attemptsOf,
    async stop() {
      client.close();
      await server.shutdown();
      dispatcher.stop();
      await consumers?.stop();
      for (const durable of consumers?.durables ?? []) {
        await bus.jsm.consumers.delete(STREAM, durable).catch(() => undefined);
      }
      delivery.close();
      await bus.close();
      await testDb.close();
    },
  };
}

export type Notifications = Awaited<ReturnType<typeof startNotifications>>;

/** A fresh user id: the stream is shared, so every test owns its users. */
export const newUserId = () => randomUUID();
