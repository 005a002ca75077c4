/**
 * identity's configuration: `loadIdentityConfig` (throws ConfigError naming the
 * variable) and `loadIdentityConfigOrExit` (one line on stderr, exit 1).
 *
 *   PORT             gRPC port (default 50051)
 *   ADMIN_PORT       admin HTTP port: /metrics, /healthz, /readyz (unset: none)
 *   DATABASE_URL     postgres:// URL of identity's own database (required)
 *   NATS_URL         NATS with JetStream, where the outbox relay publishes (required)
 *   ADMIN_EMAIL      with ADMIN_PASSWORD: an admin account ensured at start
 *   ADMIN_PASSWORD   10–128 characters; set only the first time (never changed later)
 *   JWT_PRIVATE_JWK  Ed25519 private JWK with kid, shared by replicas; when unset the
 *                    key is created in and read from the database
 *   JWT_ISSUER       `iss` of the tokens (default shopmesh-identity)
 *   JWT_AUDIENCE     `aud` of the tokens (default shopmesh)
 */
import { adminEnv } from "@shopmesh/runtime/admin-server.js";
import {
  authEnv,
  type Config,
  ConfigError,
  env,
  type Field,
  loadConfig,
} from "@shopmesh/runtime/config.js";
import type { JWK } from "jose";
import { parsePrivateJwk } from "./keys.js";

/** An optional variable parsed by `parse`, whose Error message becomes the config error. */
function optional<T>(name: string, parse: (raw: string) => T): Field<T | undefined> {
  return {
    read(raw) {
      if (raw === undefined || raw === "") return undefined;
      try {
        return parse(raw);
      } catch (err) {
        throw new ConfigError(name, (err as Error).message);
      }
    },
  };
}

const spec = {
  PORT: env.port({ default: 50051 }),
  ...adminEnv,
  DATABASE_URL: env.url({ protocols: ["postgres", "postgresql"] }),
  NATS_URL: env.string(),
  ADMIN_EMAIL: optional("ADMIN_EMAIL", (raw) => {
    if (!/^[^\s@]+@[^\s@]+$/.test(raw.trim())) throw new Error("must be an email address");
    return raw.trim();
  }),
  ADMIN_PASSWORD: optional("ADMIN_PASSWORD", (raw) => {
    // The rules of RegisterRequest.password.
    if (raw.length < 10 || raw.length > 128) throw new Error("must be 10 to 128 characters");
    return raw;
  }),
  JWT_PRIVATE_JWK: optional("JWT_PRIVATE_JWK", (raw): JWK => parsePrivateJwk(raw)),
  JWT_ISSUER: authEnv.JWT_ISSUER,
  JWT_AUDIENCE: authEnv.JWT_AUDIENCE,
};

export type IdentityConfig = Config<typeof spec>;

export function loadIdentityConfig(
  source: Record<string, string | undefined> = process.env,
): IdentityConfig {
  const config = loadConfig(spec, source);
  if (config.ADMIN_EMAIL !== undefined && config.ADMIN_PASSWORD === undefined) {
    throw new ConfigError("ADMIN_PASSWORD", "is required when ADMIN_EMAIL is set");
  }
  if (config.ADMIN_PASSWORD !== undefined && config.ADMIN_EMAIL === undefined) {
    throw new ConfigError("ADMIN_EMAIL", "is required when ADMIN_PASSWORD is set");
  }
  return config;
}

/** loadIdentityConfig, or one line naming the variable on stderr and exit 1. */
export function loadIdentityConfigOrExit(): IdentityConfig {
  try {
    return loadIdentityConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`identity: config error: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}
