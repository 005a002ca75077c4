/**
 * `loadNotificationsConfig`: the environment the notifications service reads, once,
 * validated. A bad or missing value stops the process with exit 1 and one line
 * naming the variable.
 */
import { adminEnv } from "@shopmesh/runtime/admin-server.js";
import { authEnv, env, loadConfigOrExit } from "@shopmesh/runtime/config.js";

export const DEFAULT_SMTP_FROM = "shopmesh <no-reply@shopmesh.local>";

export const notificationsEnv = {
  /** gRPC port (NotificationService, health, reflection). */
  PORT: env.port({ default: 50055 }),
  /** Admin HTTP port: /metrics, /healthz, /readyz (unset: none). */
  ...adminEnv,
  /** The service's own database. */
  DATABASE_URL: env.url({ protocols: ["postgres", "postgresql"] }),
  /** Connections in the pool. */
  DATABASE_POOL_MAX: env.int({ default: 10, min: 1, max: 200 }),
  /** NATS server(s) with JetStream, comma-separated. */
  NATS_URL: env.string(),
  /**
   * Mail server, e.g. smtp://user:pass@mail.example.com:587 (smtps:// for implicit TLS).
   * Unset: notifications are "delivered locally", i.e. logged, which is what a laptop wants.
   */
  SMTP_URL: env.optionalUrl({ protocols: ["smtp", "smtps"] }),
  /** The From header of every email. */
  SMTP_FROM: env.string({ default: DEFAULT_SMTP_FROM }),
  ...authEnv,
};

export interface NotificationsConfig {
  PORT: number;
  ADMIN_PORT: number | undefined;
  DATABASE_URL: string;
  DATABASE_POOL_MAX: number;
  NATS_URL: string;
  SMTP_URL: string | undefined;
  SMTP_FROM: string;
  JWT_ISSUER: string;
  JWT_AUDIENCE: string;
  IDENTITY_ADDR: string;
}

export function loadNotificationsConfig(): NotificationsConfig {
  return loadConfigOrExit(notificationsEnv, "notifications");
}
