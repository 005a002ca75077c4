/**
 * The shopmesh services as the supervisor runs them: command, port, start stage and
 * environment of each. identity starts first (the others fetch its JWKS), the domain
 * services next, together, and the edge last.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ServiceName } from "./config.js";
import { StartupError } from "./errors.js";
import { isPortFree } from "./net.js";
import { guardEnv, guardFlags } from "./orphans.js";
import { formatMs, type ServiceSpec } from "./supervisor.js";

/** Services with a database of their own (all but the stateless edge). */
export const DOMAIN_SERVICES = [
  "identity",
  "catalog",
  "orders",
  "payments",
  "notifications",
] as const;

const STAGE: Record<ServiceName, number> = {
  identity: 0,
  catalog: 1,
  orders: 1,
  payments: 1,
  notifications: 1,
  edge: 2,
};

const ADDRESS_VARIABLES: Partial<Record<ServiceName, string>> = {
  identity: "IDENTITY_ADDR",
  catalog: "CATALOG_ADDR",
  orders: "ORDERS_ADDR",
  payments: "PAYMENTS_ADDR",
  notifications: "NOTIFICATIONS_ADDR",
};

/** The launcher's own variables, and secrets only identity may see. */
const NOT_PASSED_ON = ["PG_URL", "DATABASE_URL", "ADMIN_EMAIL", "ADMIN_PASSWORD"];

export function entryPoint(rootDir: string, name: ServiceName): string {
  return join(rootDir, "services", name, "src", "main.ts");
}

export function serviceExists(rootDir: string, name: ServiceName): boolean {
  return existsSync(entryPoint(rootDir, name));
}

export interface ServiceContext {
  rootDir: string;
  ports: Record<ServiceName, number>;
  databaseUrls: ReadonlyMap<string, string>;
  natsUrl: string;
  logLevel: string;
  /** The environment the launcher was started with. */
  baseEnv: NodeJS.ProcessEnv;
}

export function serviceEnv(name: ServiceName, ctx: ServiceContext): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...ctx.baseEnv };
  for (const variable of NOT_PASSED_ON) delete env[variable];
  for (const [service, variable] of Object.entries(ADDRESS_VARIABLES)) {
    env[variable] = `127.0.0.1:${ctx.ports[service as ServiceName]}`;
  }
  Object.assign(env, guardEnv(), {
    PORT: String(ctx.ports[name]),
    NATS_URL: ctx.natsUrl,
    LOG_LEVEL: ctx.logLevel,
  });
  const databaseUrl = ctx.databaseUrls.get(name);
  if (databaseUrl !== undefined) env["DATABASE_URL"] = databaseUrl;
  if (name === "identity") {
    for (const variable of ["ADMIN_EMAIL", "ADMIN_PASSWORD"]) {
      const value = ctx.baseEnv[variable];
      if (value) env[variable] = value;
    }
  }
  return env;
}

/** `node --import tsx --import orphan-guard.ts services/<name>/src/main.ts`, cwd = repo. */
export function serviceSpec(name: ServiceName, ctx: ServiceContext): ServiceSpec {
  return {
    name,
    command: process.execPath,
    args: ["--import", "tsx", ...guardFlags(), join("services", name, "src", "main.ts")],
    cwd: ctx.rootDir,
    env: serviceEnv(name, ctx),
    port: ctx.ports[name],
    stage: STAGE[name],
  };
}

/** Fails start-up, naming the variable to change, when a service's port is taken. */
export async function checkPortsFree(
  names: readonly ServiceName[],
  ports: Record<ServiceName, number>,
): Promise<void> {
  for (const name of names) {
    if (!(await isPortFree(ports[name]))) {
      throw new StartupError(
        `port ${ports[name]} (${name}) is already in use; stop what holds it or set ${name.toUpperCase()}_PORT`,
      );
    }
  }
}

/** The one line that says the stack is up, e.g. "shopmesh ready: edge http://localhost:8080 (identity :50051, ...)". */
export function readyLine(
  names: readonly ServiceName[],
  ports: Record<ServiceName, number>,
  infra: { postgresPort: number; natsUrl: string; ms: number },
): string {
  const took = `in ${formatMs(infra.ms)}`;
  if (names.length === 0) {
    return `shopmesh ready: no services started (postgres :${infra.postgresPort}, nats ${infra.natsUrl}) ${took}`;
  }
  const grpc = names.filter((n) => n !== "edge").map((n) => `${n} :${ports[n]}`);
  const list = grpc.length > 0 ? ` (${grpc.join(", ")})` : "";
  return names.includes("edge")
    ? `shopmesh ready: edge http://localhost:${ports.edge}${list} ${took}`
    : `shopmesh ready: ${grpc.join(", ")} ${took}`;
}
