/**
 * PostgreSQL for `npm start`: the server named by PG_URL / DATABASE_URL, or an
 * embedded one (the runtime's startEmbeddedPostgres) on a fixed port so restarts find
 * it where they left it. Then a role and a database per domain service on it.
 */
import type { SpawnOptions } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { join } from "node:path";
import { ensureServiceDatabase } from "@shopmesh/runtime/db.js";
import {
  type EmbeddedPostgresHandle,
  startEmbeddedPostgres,
} from "@shopmesh/runtime/embedded-postgres.js";
import { StartupError } from "./errors.js";
import { pickPort } from "./net.js";
import type { Logger } from "./output.js";
import { isAlive, isOurs, signal, waitGone } from "./processes.js";
import { loadSecrets } from "./secrets.js";

export interface Postgres {
  /** Superuser URL. */
  adminUrl: string;
  port: number;
  embedded: boolean;
  /** The postmaster, when embedded. */
  pid?: number;
  stop(): Promise<void>;
  /** Immediate shutdown, for a second Ctrl-C. */
  kill(): void;
}

export async function startPostgres(options: {
  givenUrl: string | undefined;
  dataDir: string;
  preferredPort: number;
  log: Logger;
}): Promise<Postgres> {
  const { log } = options;
  if (options.givenUrl !== undefined) {
    const url = new URL(options.givenUrl);
    return {
      adminUrl: options.givenUrl,
      port: Number(url.port || 5432),
      embedded: false,
      stop: async () => {},
      kill: () => {},
    };
  }

  const { port, preferredBusy } = await pickPort(options.preferredPort);
  if (preferredBusy) {
    log.info(`port ${options.preferredPort} is busy; embedded PostgreSQL takes ${port}`);
  }
  const dataDir = join(options.dataDir, "postgres");
  await stopLeftover(dataDir, log);
  const recent: string[] = [];
  const started = performance.now();
  let pg: EmbeddedPostgresHandle;
  try {
    pg = await withoutExitHooks(() =>
      withDetachedSpawns(() =>
        startEmbeddedPostgres({
          dataDir,
          port,
          onLog: (text) => {
            for (const line of text.split("\n")) {
              if (line.trim() === "") continue;
              recent.push(line);
              if (recent.length > 20) recent.shift();
              log.debug(line.trim());
            }
          },
        }),
      ),
    );
  } catch (err) {
    const cause =
      err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
    throw new StartupError(
      `embedded PostgreSQL did not start on port ${port} (data ${dataDir})${cause}\n${recent.join("\n")}`,
    );
  }
  const pid = await postmasterPid(dataDir);
  log.info(`embedded PostgreSQL on port ${port}`, {
    ms: Math.round(performance.now() - started),
    pid,
  });
  return {
    adminUrl: pg.url,
    port,
    embedded: true,
    pid,
    async stop() {
      // A Ctrl-C in the terminal reaches PostgreSQL too (same process group), and
      // pg.stop() then waits for an exit that has already happened: watch the pid.
      const stopped = pg.stop().catch(() => undefined);
      if (pid === undefined) {
        await stopped;
        return;
      }
      if (await Promise.race([stopped.then(() => true), waitGone(pid, 15_000)])) return;
      log.warn("PostgreSQL did not stop in 15 s; immediate shutdown");
      signal(pid, "SIGQUIT");
      await waitGone(pid, 5_000);
    },
    kill: () => {
      if (pid !== undefined && isAlive(pid)) signal(pid, "SIGQUIT");
    },
  };
}

/**
 * embedded-postgres installs async-exit-hook when it is first loaded (inside
 * startEmbeddedPostgres), which takes over SIGINT, SIGTERM and SIGHUP to stop
 * PostgreSQL and exit at once — before the services have drained. The launcher orders
 * its own shutdown, so listeners added to those events while `start` runs are removed
 * as they come (its 'exit' hook stays: a last-resort stop if the launcher crashes).
 */
async function withoutExitHooks<T>(start: () => Promise<T>): Promise<T> {
  const taken = new Set(["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "message"]);
  const emitter: NodeJS.EventEmitter = process;
  const strip = (event: string | symbol, listener: (...args: unknown[]) => void) => {
    // 'newListener' fires just before the listener is added: remove it right after.
    if (typeof event === "string" && taken.has(event)) {
      queueMicrotask(() => emitter.removeListener(event, listener));
    }
  };
  emitter.on("newListener", strip);
  try {
    return await start();
  } finally {
    emitter.removeListener("newListener", strip);
  }
}

/**
 * A postmaster still running on our data directory belongs to a launcher that died
 * before it could record it (the caller has made sure no live launcher owns the
 * directory): stop it, or the new one cannot start.
 */
/**
 * embedded-postgres spawns PostgreSQL in the launcher's process group, so a Ctrl-C in
 * the terminal stops it at once, while the services are still draining (they log
 * CONNECTION_CLOSED and retry). It has no option for that; while it starts, its
 * `spawn` (a live binding to node:child_process, refreshed by syncBuiltinESMExports)
 * gives the process a group of its own, like nats-server and the services. The
 * launcher then stops PostgreSQL last, and the watchdog covers a launcher that dies.
 */
async function withDetachedSpawns<T>(start: () => Promise<T>): Promise<T> {
  // The mutable CommonJS exports object behind the ESM named exports.
  const childProcess = createRequire(import.meta.url)(
    "node:child_process",
  ) as typeof import("node:child_process");
  const original = childProcess.spawn;
  const detached = ((command: string, args: readonly string[], options: SpawnOptions = {}) =>
    original(command, args, { ...options, detached: true })) as typeof childProcess.spawn;
  childProcess.spawn = detached;
  syncBuiltinESMExports();
  try {
    return await start();
  } finally {
    childProcess.spawn = original;
    syncBuiltinESMExports();
  }
}

async function stopLeftover(dataDir: string, log: Logger): Promise<void> {
  const pid = await postmasterPid(dataDir);
  if (pid === undefined || !isOurs(pid, dataDir)) return;
  log.warn(`stopping a PostgreSQL left running on ${dataDir}`, { pid });
  signal(pid, "SIGINT");
  if (!(await waitGone(pid, 15_000))) signal(pid, "SIGQUIT");
  await waitGone(pid, 5_000);
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A role and a database per service (named `<prefix><service>`), with the password
 * kept in secrets.json. Returns each service's DATABASE_URL.
 */
export async function provisionDatabases(options: {
  adminUrl: string;
  services: readonly string[];
  prefix: string;
  secretsFile: string;
}): Promise<Map<string, string>> {
  const names = options.services.map((s) => `${options.prefix}${s}`);
  const secrets = await loadSecrets(options.secretsFile, names);
  const urls = new Map<string, string>();
  for (const [i, service] of options.services.entries()) {
    const name = names[i] as string;
    try {
      urls.set(
        service,
        await ensureServiceDatabase(options.adminUrl, name, secrets[name] as string),
      );
    } catch (err) {
      throw new StartupError(
        `cannot create database ${name} on ${redactUrl(options.adminUrl)}: ${(err as Error).message}`,
      );
    }
  }
  return urls;
}

/** The URL with its password replaced, for logs and stack.json. */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.password) url.password = "***";
    return url.toString();
  } catch {
    return "(unparsable URL)";
  }
}
