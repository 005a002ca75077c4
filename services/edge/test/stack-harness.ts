/**
 * The real `npm start` stack for end-to-end tests: free ports, fresh databases on the
 * PostgreSQL in PG_URL (a random DB_PREFIX, dropped afterwards), a nats-server with
 * JetStream the test owns (so it can kill and restart it), an admin account, and the
 * launcher's output kept for error messages. Shared by the e2e test files.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DOMAIN_SERVICES } from "@shopmesh/launcher/services.js";
import { type LauncherRun, runLauncher } from "@shopmesh/launcher/spawn-stack.js";
import { dropServiceDatabase, freePorts } from "@shopmesh/runtime";
import postgres from "postgres";

export const repoRoot = new URL("../../../", import.meta.url).pathname;

export interface StackOptions {
  /** Extra environment of `npm start` (e.g. rate limits). */
  env?: Record<string, string>;
  /** How long `npm start` may take to print "shopmesh ready". */
  readyTimeoutMs?: number;
}

export interface Stack {
  /** The edge, e.g. http://127.0.0.1:41234 */
  base: string;
  edgePort: number;
  dataDir: string;
  dbPrefix: string;
  adminEmail: string;
  adminPassword: string;
  /** How long `npm start` took to be ready, in ms. */
  startedMs: number;
  /** The `npm start` process (its own process group). */
  process: ChildProcess;
  /** What `npm start` printed so far. */
  output(): string;
  /** The test's nats-server: kill it (SIGKILL) and start it again on the same port. */
  nats: { kill(): void; start(): void };
  /** A service's own database, as the launcher created it. */
  serviceDb(name: string): postgres.Sql;
  /** Stops the stack and NATS, drops the databases, removes the data directory. */
  stop(): Promise<void>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const pgUrl = process.env["PG_URL"] as string;
  const dbPrefix = `e2e_${randomBytes(3).toString("hex")}_`;
  const dataDir = mkdtempSync(join(tmpdir(), "shopmesh-e2e-"));
  const natsDir = join(dataDir, "own-nats");
  const [edge, identity, catalog, orders, payments, notifications, natsPort] = await freePorts(7);
  let nats: ChildProcess | undefined;
  const startNats = () => {
    nats = spawn(
      "nats-server",
      ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", natsDir],
      { stdio: "ignore" },
    );
  };
  startNats();
  const adminEmail = `admin-${randomUUID().slice(0, 8)}@example.com`;
  const adminPassword = "admin-password-123";
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    PG_URL: pgUrl,
    DATA_DIR: dataDir,
    EDGE_PORT: String(edge),
    IDENTITY_PORT: String(identity),
    CATALOG_PORT: String(catalog),
    ORDERS_PORT: String(orders),
    PAYMENTS_PORT: String(payments),
    NOTIFICATIONS_PORT: String(notifications),
    NATS_URL: `nats://127.0.0.1:${natsPort}`,
    DB_PREFIX: dbPrefix,
    ADMIN_EMAIL: adminEmail,
    ADMIN_PASSWORD: adminPassword,
    LOG_LEVEL: "warn",
    ...options.env,
  };
  delete env["DATABASE_URL"];
  const cleanUp = async () => {
    if (nats !== undefined && nats.exitCode === null && nats.signalCode === null) {
      const exited = once(nats, "exit");
      nats.kill("SIGKILL");
      await exited;
    }
    for (const name of DOMAIN_SERVICES)
      await dropServiceDatabase(pgUrl, `${dbPrefix}${name}`).catch(() => undefined);
    // Retried: a process that has just exited may still have files appear in it for a moment.
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  };
  let launcher: LauncherRun;
  try {
    launcher = await runLauncher({
      argv: ["npm", "start"],
      cwd: repoRoot,
      env,
      readyTimeoutMs: options.readyTimeoutMs ?? 90_000,
    });
  } catch (err) {
    await cleanUp();
    throw err;
  }
  const stop = async () => {
    await launcher.stop();
    await cleanUp();
  };
  return {
    base: `http://127.0.0.1:${edge}`,
    edgePort: edge as number,
    dataDir,
    dbPrefix,
    adminEmail,
    adminPassword,
    startedMs: launcher.startMs,
    process: launcher.child,
    output: launcher.output,
    nats: {
      kill: () => nats?.kill("SIGKILL"),
      start: startNats,
    },
    serviceDb(name) {
      const url = new URL(pgUrl);
      url.pathname = `/${dbPrefix}${name}`;
      return postgres(url.toString(), { max: 2, onnotice: () => {} });
    },
    stop,
  };
}
