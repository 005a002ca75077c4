/**
 * `loadCatalogConfig`: the environment the catalog reads, once, validated. A bad or
 * missing value stops the process with exit 1 and one line naming the variable.
 */
import { adminEnv } from "@shopmesh/runtime/admin-server.js";
import { authEnv, env, loadConfigOrExit } from "@shopmesh/runtime/config.js";

export const catalogEnv = {
  /** gRPC port (CatalogService, InventoryService, health, reflection). */
  PORT: env.port({ default: 50052 }),
  /** Admin HTTP port: /metrics, /healthz, /readyz (unset: none). */
  ...adminEnv,
  /** The catalog's own database. */
  DATABASE_URL: env.url({ protocols: ["postgres", "postgresql"] }),
  /** NATS server(s) with JetStream: the outbox relay publishes StockLow there. */
  NATS_URL: env.string(),
  /** Connections in the pool. */
  DATABASE_POOL_MAX: env.int({ default: 10, min: 1, max: 200 }),
  /** Insert the demo products on start (idempotent; existing skus are left alone). */
  // The runtime has no boolean field builder: oneOf, turned into a boolean below.
  SEED_DEMO_CATALOG: env.oneOf(["true", "false"], { default: "true" }),
  /** A StockLow event is written when a change takes stock from above this to at or below it. */
  LOW_STOCK_THRESHOLD: env.int({ default: 5, min: 0 }),
  ...authEnv,
};

export interface CatalogConfig {
  PORT: number;
  ADMIN_PORT: number | undefined;
  DATABASE_URL: string;
  NATS_URL: string;
  DATABASE_POOL_MAX: number;
  SEED_DEMO_CATALOG: boolean;
  LOW_STOCK_THRESHOLD: number;
  JWT_ISSUER: string;
  JWT_AUDIENCE: string;
  IDENTITY_ADDR: string;
}

export function loadCatalogConfig(): CatalogConfig {
  const raw = loadConfigOrExit(catalogEnv, "catalog");
  return { ...raw, SEED_DEMO_CATALOG: raw.SEED_DEMO_CATALOG === "true" };
}
