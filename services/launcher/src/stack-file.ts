/**
 * `.data/stack.json`: what the running launcher started — the processes serving
 * traffic (service, replica, pid, port, adminPort, ready), PostgreSQL and NATS. Rewritten atomically on
 * every change, removed on a clean stop. A file left behind means a launcher died:
 * the watchdog (and the next launcher) stop the processes it lists.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { StartupError } from "./errors.js";
import type { Logger } from "./output.js";
import { isOurs, signal, signalGroup, waitGone } from "./processes.js";
import type { RunningProcess } from "./supervisor.js";

export interface StackInfo {
  launcherPid: number;
  /** Absolute; PostgreSQL and NATS keep their data under it. */
  dataDir: string;
  startedAt: string;
  updatedAt: string;
  services: RunningProcess[];
  postgres?: { url: string; port: number; embedded: boolean; pid?: number };
  nats?: { url: string; spawned: boolean; pid?: number };
}

export interface StackFile {
  update(change: Partial<Pick<StackInfo, "services" | "postgres" | "nats">>): void;
  remove(): void;
}

export function createStackFile(path: string, dataDir: string): StackFile {
  const info: StackInfo = {
    launcherPid: process.pid,
    dataDir,
    startedAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    services: [],
  };
  const write = () => {
    info.updatedAt = new Date().toISOString();
    // Synchronous and renamed into place: a reader never sees half a file.
    writeFileSync(`${path}.tmp`, `${JSON.stringify(info, null, 2)}\n`);
    renameSync(`${path}.tmp`, path);
  };
  write();
  return {
    update(change) {
      Object.assign(info, change);
      write();
    },
    remove: () => rmSync(path, { force: true }),
  };
}

export function readStackFile(path: string): StackInfo | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as StackInfo;
  } catch {
    return undefined;
  }
}

/**
 * Makes the data directory ours: refuses when a live launcher runs on it, stops what
 * a dead one left behind (in case its watchdog died with it).
 */
export async function claimDataDir(dataDir: string, stackPath: string, log: Logger) {
  // World-readable: the embedded PostgreSQL runs as its own user when we are root.
  mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  const previous = readStackFile(stackPath);
  if (previous === undefined) return;
  const pid = previous.launcherPid;
  if (pid !== process.pid && isOurs(pid, "launcher/src/main.ts")) {
    throw new StartupError(`another launcher (pid ${pid}) runs on ${dataDir}`);
  }
  const reaped = await reapStack(previous);
  if (reaped.length > 0) {
    log.warn(`stopped leftovers of a launcher that died: ${reaped.join(", ")}`);
  }
}

interface Target {
  name: string;
  pid: number;
  stop: NodeJS.Signals;
  kill: NodeJS.Signals;
}

/**
 * Stops what a dead launcher left running, services first, then NATS and PostgreSQL
 * (so services drain against a live database): services and nats-server with SIGTERM,
 * PostgreSQL with SIGINT (fast shutdown); SIGKILL (SIGQUIT for PostgreSQL) to whatever
 * is still there after `boundMs`. With `servicesStopThemselves` (their orphan guard has
 * fired) services are only waited for, not signalled: a second SIGTERM would cut their
 * graceful shutdown short. Returns the names of the processes it stopped.
 */
export async function reapStack(
  stack: StackInfo,
  options: { boundMs?: number; servicesStopThemselves?: boolean } = {},
): Promise<string[]> {
  const boundMs = options.boundMs ?? 10_000;
  const services: Target[] = (stack.services ?? [])
    .filter((s) => isOurs(s.pid, `services/${s.service}/src/main.ts`))
    .map((s) => ({ name: s.service, pid: s.pid, stop: "SIGTERM", kill: "SIGKILL" }));
  const infra: Target[] = [];
  const nats = stack.nats?.pid;
  // Their command lines name our data directory: a recycled pid never matches.
  if (nats !== undefined && isOurs(nats, join(stack.dataDir, "nats"))) {
    infra.push({ name: "nats-server", pid: nats, stop: "SIGTERM", kill: "SIGKILL" });
  }
  const pg = stack.postgres?.embedded ? stack.postgres.pid : undefined;
  if (pg !== undefined && isOurs(pg, join(stack.dataDir, "postgres"))) {
    infra.push({ name: "postgres", pid: pg, stop: "SIGINT", kill: "SIGQUIT" });
  }
  // The guard gives a service 10 s before it exits regardless; wait a little longer.
  await stopAll(
    services,
    options.servicesStopThemselves ? boundMs + 2_000 : boundMs,
    !options.servicesStopThemselves,
  );
  await stopAll(infra, boundMs, true);
  return [...services, ...infra].map((t) => t.name);
}

async function stopAll(targets: Target[], boundMs: number, send: boolean): Promise<void> {
  if (send) for (const t of targets) signal(t.pid, t.stop);
  await Promise.all(
    targets.map(async (t) => {
      if (await waitGone(t.pid, boundMs)) return;
      if (t.kill === "SIGKILL") signalGroup(t.pid, "SIGKILL");
      signal(t.pid, t.kill);
      await waitGone(t.pid, 2_000);
    }),
  );
}
