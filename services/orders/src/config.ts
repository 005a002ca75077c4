/**
 * `loadOrdersConfig`: the environment orders reads, once, validated. A bad or
 * missing value stops the process with exit 1 and one line naming the variable.
 *
 *   PORT                 gRPC port (default 50053)
 *   ADMIN_PORT           admin HTTP port: /metrics, /healthz, /readyz (unset: none)
 *   DATABASE_URL         postgres:// URL of the orders database (required)
 *   DATABASE_POOL_MAX    connections in the pool (default 10)
 *   NATS_URL             NATS server(s) with JetStream, comma-separated (required)
 *   NATS_DURABLE_PREFIX  prefix of the durable consumer names (default "orders")
 *   IDENTITY_ADDR        identity's gRPC address: GetUser, and the JWKS (default 127.0.0.1:50051)
 *   CATALOG_ADDR         catalog's gRPC address: ReserveStock / ReleaseStock (default 127.0.0.1:50052)
 *   ORPHAN_RESERVATION_MS  stock reserved for an order that was not recorded within this
 *                        long is given back by the placement sweeper (default 120000;
 *                        far above PlaceOrder's deadline)
 *   USER_CHECK_TTL_MS    how long identity's yes to "does this user exist" is remembered
 *                        per user (default 60000; 0: identity is asked on every order)
 *   JWT_ISSUER, JWT_AUDIENCE   expected `iss` / `aud` of access tokens
 */
import { adminEnv } from "@shopmesh/runtime/admin-server.js";
import { authEnv, type Config, env, loadConfigOrExit } from "@shopmesh/runtime/config.js";

export const ordersEnv = {
  PORT: env.port({ default: 50053 }),
  ...adminEnv,
  DATABASE_URL: env.url({ protocols: ["postgres", "postgresql"] }),
  DATABASE_POOL_MAX: env.int({ default: 10, min: 1, max: 200 }),
  // A list ("nats://a:4222,nats://b:4222") is allowed, so no URL check here.
  NATS_URL: env.string(),
  NATS_DURABLE_PREFIX: env.string({ default: "orders" }),
  CATALOG_ADDR: env.string({ default: "127.0.0.1:50052" }),
  ORPHAN_RESERVATION_MS: env.int({ default: 120_000, min: 1_000, max: 86_400_000 }),
  USER_CHECK_TTL_MS: env.int({ default: 60_000, min: 0, max: 3_600_000 }),
  ...authEnv,
};

export type OrdersConfig = Config<typeof ordersEnv>;

export function loadOrdersConfig(): OrdersConfig {
  return loadConfigOrExit(ordersEnv, "orders");
}
