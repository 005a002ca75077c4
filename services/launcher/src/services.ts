/**
 * The shopmesh services as the supervisor runs them: command, port, start stage and
 * environment of each. identity starts first (the others fetch its JWKS), the domain
 * services next, together, and the edge last.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ServiceName } from "./config.js";
import { guardEnv, guardFlags } from "./orphans.js";
import { grpcTarget, type ProcessPlan, replicaPorts } from "./replicas.js";
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
/** The runtime's --import entry that starts tracing (relative to the repository). */
const TELEMETRY_REGISTER = "./services/runtime/src/telemetry-register.ts";

export function entryPoint(rootDir: string, name: ServiceName): string {
  return join(rootDir, "services", name, "src", "main.ts");
}

export function serviceExists(rootDir: string, name: ServiceName): boolean {
  return existsSync(entryPoint(rootDir, name));
}

/** The service's bundle (`npm run build:service <name>`), as the image runs it. */
export function bundlePath(name: ServiceName, file = "main.mjs"): string {
  return join("services", name, "dist", file);
}

export interface ServiceContext {
  rootDir: string;
  /** Every process the launcher runs (all replicas), with its ports. */
  plans: readonly ProcessPlan[];
  /** Configured base ports: the address of a service that does not run here. */
  ports: Record<ServiceName, number>;
  databaseUrls: ReadonlyMap<string, string>;
  natsUrl: string;
  logLevel: string;
  /** The environment the launcher was started with. */
  baseEnv: NodeJS.ProcessEnv;
  /** TypeScript sources through tsx, or the bundles in services/<name>/dist. */
  code: "source" | "bundle";
}

export function serviceEnv(plan: ProcessPlan, ctx: ServiceContext): NodeJS.ProcessEnv {
  const name = plan.service;
  const env: NodeJS.ProcessEnv = { ...ctx.baseEnv };
  for (const variable of NOT_PASSED_ON) delete env[variable];
  for (const [service, variable] of Object.entries(ADDRESS_VARIABLES)) {
    const ports = replicaPorts(ctx.plans, service as ServiceName);
    env[variable] = grpcTarget(ports.length > 0 ? ports : [ctx.ports[service as ServiceName]]);
  }
  const replicas = replicaPorts(ctx.plans, name).length;
  Object.assign(env, guardEnv(), {
    PORT: String(plan.port),
    ADMIN_PORT: String(plan.adminPort),
    REPLICA: String(plan.replica),
    NATS_URL: ctx.natsUrl,
    LOG_LEVEL: ctx.logLevel,
    // Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT is set (passed on with the rest).
    OTEL_SERVICE_NAME: name,
  });
  // Edge replicas share one port: each binds it with SO_REUSEPORT.
  if (name === "edge" && replicas > 1) env["REUSE_PORT"] = "1";
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

/**
 * `node --import tsx --import telemetry-register.ts --import orphan-guard.ts
 * services/<name>/src/main.ts`, cwd = repo: the OpenTelemetry SDK starts before the
 * service's own code (it stays off unless an OTLP endpoint is configured). With
 * SERVICE_CODE=bundle: `node --import services/<name>/dist/telemetry-register.mjs
 * --import orphan-guard.ts services/<name>/dist/main.mjs`, the image's command (the
 * guard has no types to strip, so Node loads it as it is).
 */
export function serviceSpec(plan: ProcessPlan, ctx: ServiceContext): ServiceSpec {
  const name = plan.service;
  const replicas = replicaPorts(ctx.plans, name).length;
  return {
    name,
    replica: plan.replica,
    label: replicas > 1 ? `${name}-${plan.replica}` : name,
    command: process.execPath,
    args: [
      // A 16 MB young generation: ~80-100 MB less RSS per service at load, same
      // throughput (BENCHMARKS.md, "Memory"). The image's entrypoint passes it too.
      "--max-semi-space-size=16",
      ...(ctx.code === "bundle"
        ? [
            "--import",
            `./${bundlePath(name, "telemetry-register.mjs")}`,
            ...guardFlags(),
            bundlePath(name),
          ]
        : [
            "--import",
            "tsx",
            "--import",
            TELEMETRY_REGISTER,
            ...guardFlags(),
            join("services", name, "src", "main.ts"),
          ]),
    ],
    cwd: ctx.rootDir,
    env: serviceEnv(plan, ctx),
    port: plan.port,
    adminPort: plan.adminPort,
    // A shared port answers as soon as a sibling listens: probe this process itself.
    probePort: !(name === "edge" && replicas > 1),
    stage: STAGE[name],
  };
}

/** The one line that says the stack is up, e.g. "shopmesh ready: edge http://localhost:8080 (identity :50051, ...)". */
export function readyLine(
  names: readonly ServiceName[],
  plans: readonly ProcessPlan[],
  infra: { postgresPort: number; natsUrl: string; ms: number },
): string {
  const took = `in ${formatMs(infra.ms)}`;
  if (names.length === 0) {
    return `shopmesh ready: no services started (postgres :${infra.postgresPort}, nats ${infra.natsUrl}) ${took}`;
  }
  const grpc = names
    .filter((n) => n !== "edge")
    .map((n) => `${n} :${replicaPorts(plans, n).join(",")}`);
  const list = grpc.length > 0 ? ` (${grpc.join(", ")})` : "";
  const edges = replicaPorts(plans, "edge");
  const edgeReplicas = edges.length > 1 ? ` ×${edges.length}` : "";
  return names.includes("edge")
    ? `shopmesh ready: edge http://localhost:${edges[0]}${edgeReplicas}${list} ${took}`
    : `shopmesh ready: ${grpc.join(", ")} ${took}`;
}
