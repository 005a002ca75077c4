/**
 * Runs the real stack for a benchmark: the launcher (`npm start`'s entry point, on
 * the same Node) as a child process with fresh ports, its own DATA_DIR in a temp
 * folder, a random DB_PREFIX, its own nats-server (NATS_URL unset), the edge rate
 * limit off and LOG_LEVEL=warn; PostgreSQL from PG_URL when set, else embedded.
 * `stop()` sends SIGTERM and waits for the launcher to exit (it stops everything).
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SERVICE_NAMES } from "@shopmesh/launcher/config.js";
import { type LauncherRun, runLauncher } from "@shopmesh/launcher/spawn-stack.js";
import { dropServiceDatabase } from "@shopmesh/runtime/db.js";
import { freePorts } from "@shopmesh/runtime/embedded-postgres.js";
import postgres from "postgres";

export const repoRoot = new URL("../../", import.meta.url).pathname;

export interface StackProcess {
  service: string;
  pid: number;
  port: number;
}

export interface StackInfo {
  services: StackProcess[];
  postgres?: { url: string; port: number; embedded: boolean; pid?: number };
  nats?: { url: string; spawned: boolean; pid?: number };
}

export interface Stack {
  edgeUrl: string;
  ports: Record<(typeof SERVICE_NAMES)[number], number>;
  dataDir: string;
  adminEmail: string;
  adminPassword: string;
  /** PostgreSQL superuser URL (for scratch databases). */
  pgAdminUrl: string;
  /** Prefix of the services' databases: `${dbPrefix}orders` is orders' database. */
  dbPrefix: string;
  natsUrl: string;
  /** DATA_DIR/stack.json as it is now (pids change when a service is restarted). */
  info(): StackInfo;
  /** Milliseconds from spawn to the "shopmesh ready" line. */
  startMs: number;
  /** Everything the launcher printed (warnings and errors at LOG_LEVEL=warn). */
  output(): string;
  stop(): Promise<void>;
}

export async function startStack(
  options: {
    env?: Record<string, string>;
    log?: (line: string) => void;
    readyTimeoutMs?: number;
  } = {},
): Promise<Stack> {
  const log = options.log ?? (() => {});
  const dataDir = mkdtempSync(join(tmpdir(), "shopmesh-bench-"));
  // Run as root, the embedded PostgreSQL runs as the `postgres` user: it must reach in.
  chmodSync(dataDir, 0o755);
  const p = await freePorts(SERVICE_NAMES.length);
  const ports = Object.fromEntries(
    SERVICE_NAMES.map((s, i) => [s, p[i] as number]),
  ) as Stack["ports"];
  const adminEmail = `bench-admin-${randomBytes(3).toString("hex")}@example.com`;
  const adminPassword = `bench-${randomBytes(9).toString("hex")}`;
  const givenPg = process.env["PG_URL"] || undefined;
  const dbPrefix = `bench_${randomBytes(3).toString("hex")}_`;
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    DATA_DIR: dataDir,
    DB_PREFIX: dbPrefix,
    EDGE_PORT: String(ports.edge),
    IDENTITY_PORT: String(ports.identity),
    CATALOG_PORT: String(ports.catalog),
    ORDERS_PORT: String(ports.orders),
    PAYMENTS_PORT: String(ports.payments),
    NOTIFICATIONS_PORT: String(ports.notifications),
    EMBEDDED_PG_PORT: "0",
    NATS_PORT: "0",
    RATE_LIMIT_RPS: "0",
    LOG_LEVEL: "warn",
    LOG_FORMAT: "pretty",
    ADMIN_EMAIL: adminEmail,
    ADMIN_PASSWORD: adminPassword,
    ...options.env,
  };
  delete env["NATS_URL"];
  delete env["DATABASE_URL"];
  delete env["SERVICES"];
  if (givenPg) env["PG_URL"] = givenPg;
  else delete env["PG_URL"];

  let launcher: LauncherRun;
  try {
    launcher = await runLauncher({
      argv: [process.execPath, "--import", "tsx", "services/launcher/src/main.ts"],
      cwd: repoRoot,
      env,
      readyTimeoutMs: options.readyTimeoutMs ?? 180_000,
      onLine: log,
    });
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    throw err;
  }
  const stop = async () => {
    await launcher.stop();
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    // On a server of the machine's (PG_URL), the run's databases and roles go too; the
    // embedded server's data went with the data directory.
    if (givenPg !== undefined) await dropDatabases(givenPg, dbPrefix);
  };
  const info = (): StackInfo =>
    JSON.parse(readFileSync(join(dataDir, "stack.json"), "utf8")) as StackInfo;
  const first = info();
  const pgUrl = new URL(givenPg ?? first.postgres?.url ?? "");
  // stack.json redacts the password; the embedded server's superuser password is fixed.
  if (givenPg === undefined && pgUrl.password === "***") pgUrl.password = "postgres";
  return {
    edgeUrl: `http://127.0.0.1:${ports.edge}`,
    ports,
    dataDir,
    adminEmail,
    adminPassword,
    pgAdminUrl: pgUrl.toString(),
    dbPrefix,
    natsUrl: first.nats?.url ?? "",
    info,
    startMs: launcher.startMs,
    output: launcher.output,
    stop,
  };
}

/** Drops every database (and its role) whose name starts with `prefix`. */
async function dropDatabases(adminUrl: string, prefix: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await admin<{ datname: string }[]>`
      select datname from pg_database where starts_with(datname, ${prefix})`;
    for (const { datname } of rows) await dropServiceDatabase(adminUrl, datname);
  } finally {
    await admin.end({ timeout: 5 });
  }
}
