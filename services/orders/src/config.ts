/**
 * `loadOrdersConfig`: the environment orders reads, once, validated. A bad or
 * missing value stops the process with exit 1 and one line naming the variable.
 *
 *   PORT                 gRPC port (default 50053)
 *   DATABASE_URL         postgres:// URL of the orders database (required)
 *   DATABASE_POOL_MAX    connections in the pool (default 10)
 *   NATS_URL             NATS server(s) with JetStream, comma-separated (required)
 *   NATS_DURABLE_PREFIX  prefix of the durable consumer names (default "orders")
 *   IDENTITY_ADDR        identity's gRPC address: GetUser, and the JWKS (default 127.0.0.1:50051)
 *   CATALOG_ADDR         catalog's gRPC address: ReserveStock / ReleaseStock (default 127.0.0.1:50052)
 *   JWT_ISSUER, JWT_AUDIENCE   expected `iss` / `aud` of access tokens
 */
import {
  authEnv,
  type Config,
  ConfigError,
  env,
  type Field,
  loadConfigOrExit,
} from "@shopmesh/runtime/config.js";

// The runtime's env.url echoes a value it cannot parse, and a database URL carries a
// password: this one names the problem only. (ConfigError: loadConfig passes other
// errors through as crashes.)
const postgresUrl: Field<string> = {
  read(raw) {
    if (raw === undefined || raw === "")
      throw new ConfigError("DATABASE_URL", "is required but not set");
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new ConfigError("DATABASE_URL", "must be a URL");
    }
    if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
      throw new ConfigError(
        "DATABASE_URL",
        `must use postgres or postgresql (got "${url.protocol}")`,
      );
    }
    return raw;
  },
};

export const ordersEnv = {
  PORT: env.port({ default: 50053 }),
  DATABASE_URL: postgresUrl,
  DATABASE_POOL_MAX: env.int({ default: 10, min: 1, max: 200 }),
  // A list ("nats://a:4222,nats://b:4222") is allowed, so no URL check here.
  NATS_URL: env.string(),
  NATS_DURABLE_PREFIX: env.string({ default: "orders" }),
  CATALOG_ADDR: env.string({ default: "127.0.0.1:50052" }),
  ...authEnv,
};

export type OrdersConfig = Config<typeof ordersEnv>;

export function loadOrdersConfig(): OrdersConfig {
  return loadConfigOrExit(ordersEnv, "orders");
}
