/**
 * `loadPaymentsConfig`: the environment the payments service reads, once, validated.
 * A bad or missing value stops the process with exit 1 and one line naming the variable.
 */
import { adminEnv } from "@shopmesh/runtime/admin-server.js";
import { authEnv, type Config, env, loadConfigOrExit } from "@shopmesh/runtime/config.js";

export const paymentsEnv = {
  /** gRPC port (PaymentService, health, reflection). */
  PORT: env.port({ default: 50054 }),
  /** Admin HTTP port: /metrics, /healthz, /readyz (unset: none). */
  ...adminEnv,
  /** The payments service's own database. */
  DATABASE_URL: env.url({ protocols: ["postgres", "postgresql"] }),
  /** Connections in the pool. */
  DATABASE_POOL_MAX: env.int({ default: 10, min: 1, max: 200 }),
  /** NATS server(s) with JetStream, comma separated (a plain string: a list is not one URL). */
  NATS_URL: env.string(),
  /** Delay the provider simulator adds to every call, to make the async saga visible. */
  PROVIDER_LATENCY_MS: env.int({ default: 0, min: 0, max: 10_000 }),
  ...authEnv,
};

export type PaymentsConfig = Config<typeof paymentsEnv>;

export function loadPaymentsConfig(): PaymentsConfig {
  return loadConfigOrExit(paymentsEnv, "payments");
}
