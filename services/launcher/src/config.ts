/**
 * The launcher's configuration, read once from the environment. A bad value stops
 * `npm start` with one line naming the variable (the runtime's loadConfigOrExit).
 */
import { ConfigError, env, type Field, loadConfigOrExit } from "@shopmesh/runtime/config.js";

/** Every service `npm start` knows, in start order. */
export const SERVICE_NAMES = [
  "identity",
  "catalog",
  "orders",
  "payments",
  "notifications",
  "edge",
] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** "all", "none" or a comma-separated list of service names. */
function serviceList(variable: string): Field<ServiceName[]> {
  return {
    read(raw) {
      const value = (raw ?? "").trim();
      if (value === "" || value === "all") return [...SERVICE_NAMES];
      if (value === "none") return [];
      const names = value.split(",").map((s) => s.trim());
      for (const name of names) {
        if (!(SERVICE_NAMES as readonly string[]).includes(name)) {
          throw new ConfigError(
            variable,
            `must be "all", "none" or a list of ${SERVICE_NAMES.join(", ")} (got "${name}")`,
          );
        }
      }
      return SERVICE_NAMES.filter((name) => names.includes(name));
    },
  };
}

function identifierPrefix(variable: string): Field<string> {
  return {
    read(raw) {
      const value = raw ?? "";
      if (value !== "" && !/^[a-z][a-z0-9_]{0,40}$/.test(value)) {
        throw new ConfigError(variable, `must be lower-case letters, digits, _ (got "${value}")`);
      }
      return value;
    },
  };
}

/** Most replicas of one service `npm start` runs (ports step by 10 per replica). */
export const MAX_REPLICAS = 8;

/**
 * Replica counts: empty (1 each), a number for every service ("2"), per service
 * ("orders=2,payments=3"), or both ("2,notifications=1"): a bare number sets the
 * default, `name=n` overrides it.
 */
export function replicaCounts(variable: string): Field<Record<ServiceName, number>> {
  const count = (text: string, what: string) => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < 1 || n > MAX_REPLICAS) {
      throw new ConfigError(
        variable,
        `${what} must be a whole number from 1 to ${MAX_REPLICAS} (got "${text}")`,
      );
    }
    return n;
  };
  return {
    read(raw) {
      const counts = Object.fromEntries(SERVICE_NAMES.map((n) => [n, 1])) as Record<
        ServiceName,
        number
      >;
      const value = (raw ?? "").trim();
      if (value === "") return counts;
      const overrides: [ServiceName, number][] = [];
      for (const part of value.split(",").map((s) => s.trim())) {
        const eq = part.indexOf("=");
        if (eq < 0) {
          const n = count(part, "a replica count");
          for (const name of SERVICE_NAMES) counts[name] = n;
          continue;
        }
        const name = part.slice(0, eq).trim();
        if (!(SERVICE_NAMES as readonly string[]).includes(name)) {
          throw new ConfigError(
            variable,
            `names an unknown service "${name}" (one of ${SERVICE_NAMES.join(", ")})`,
          );
        }
        overrides.push([name as ServiceName, count(part.slice(eq + 1).trim(), name)]);
      }
      for (const [name, n] of overrides) counts[name] = n;
      return counts;
    },
  };
}

const servicePort = (port: number) => env.int({ default: port, min: 1, max: 65535 });

const spec = {
  IDENTITY_PORT: servicePort(50051),
  CATALOG_PORT: servicePort(50052),
  ORDERS_PORT: servicePort(50053),
  PAYMENTS_PORT: servicePort(50054),
  NOTIFICATIONS_PORT: servicePort(50055),
  EDGE_PORT: servicePort(8080),
  /** A PostgreSQL server to use (superuser URL); unset: an embedded one is started. */
  PG_URL: env.optionalUrl({ protocols: ["postgres", "postgresql"] }),
  DATABASE_URL: env.optionalUrl({ protocols: ["postgres", "postgresql"] }),
  /** Port of the embedded PostgreSQL; a free one is taken when it is busy (0: always). */
  EMBEDDED_PG_PORT: env.port({ default: 5433 }),
  /** A NATS server to use; unset: `nats-server` from PATH is spawned with JetStream. */
  NATS_URL: env.optionalUrl({ protocols: ["nats", "tls"] }),
  /** Port of the spawned nats-server; a free one is taken when it is busy (0: always). */
  NATS_PORT: env.port({ default: 4223 }),
  /** Embedded Postgres data, NATS store, secrets.json and stack.json (relative to the repo). */
  DATA_DIR: env.string({ default: ".data" }),
  LOG_LEVEL: env.oneOf(LOG_LEVELS, { default: "info" }),
  /** pretty: "time [service] level msg key=value"; json: each service's pino line as is. */
  LOG_FORMAT: env.oneOf(["pretty", "json"] as const, { default: "pretty" }),
  /** Which services to run: all (default), none (infrastructure only) or a list. */
  SERVICES: serviceList("SERVICES"),
  /** Prefix of the per-service databases and roles, for several stacks on one server. */
  DB_PREFIX: identifierPrefix("DB_PREFIX"),
  /** Replicas per service: "2" (all), "orders=2,payments=3", or "2,notifications=1". */
  REPLICAS: replicaCounts("REPLICAS"),
  /** First admin (metrics/health) port; process i gets base + i, a free one if busy (0: always). */
  ADMIN_PORT_BASE: env.port({ default: 9100 }),
  /**
   * What the services run from: "source" (TypeScript through tsx, the default) or
   * "bundle" (services/<name>/dist, as in the image; `npm run build:service all` first).
   */
  SERVICE_CODE: env.oneOf(["source", "bundle"] as const, { default: "source" }),
  /** Set (to anything): no colours even on a terminal (no-color.org). */
  NO_COLOR: env.optionalString(),
};

export type LauncherConfig = ReturnType<typeof loadLauncherConfig>;

export function loadLauncherConfig() {
  const config = loadConfigOrExit(spec, "launcher");
  const ports: Record<ServiceName, number> = {
    identity: config.IDENTITY_PORT,
    catalog: config.CATALOG_PORT,
    orders: config.ORDERS_PORT,
    payments: config.PAYMENTS_PORT,
    notifications: config.NOTIFICATIONS_PORT,
    edge: config.EDGE_PORT,
  };
  return {
    ports,
    pgUrl: config.PG_URL ?? config.DATABASE_URL,
    embeddedPgPort: config.EMBEDDED_PG_PORT,
    natsUrl: config.NATS_URL,
    natsPort: config.NATS_PORT,
    dataDir: config.DATA_DIR,
    logLevel: config.LOG_LEVEL,
    logFormat: config.LOG_FORMAT,
    services: config.SERVICES,
    replicas: config.REPLICAS,
    adminPortBase: config.ADMIN_PORT_BASE,
    dbPrefix: config.DB_PREFIX,
    code: config.SERVICE_CODE,
    color: config.NO_COLOR === undefined && process.stdout.isTTY === true,
  };
}
