/**
 * NATS for `npm start`: the server named by NATS_URL, or `nats-server` from PATH with
 * JetStream, its store under the data directory, on a fixed port (a free one if busy).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { createInterface } from "node:readline";
import { StartupError } from "./errors.js";
import { pickPort, waitForPort } from "./net.js";
import type { Logger } from "./output.js";
import { signal, signalGroup } from "./processes.js";

export interface Nats {
  url: string;
  spawned: boolean;
  pid?: number;
  stop(): Promise<void>;
  kill(): void;
}

export const NATS_NOT_FOUND =
  "nats-server not found on PATH; install it (apt-get install nats-server) or set NATS_URL";

export async function startNats(options: {
  givenUrl: string | undefined;
  dataDir: string;
  preferredPort: number;
  log: Logger;
  /** Where to look for nats-server; the PATH by default. */
  path?: string;
}): Promise<Nats> {
  const { log } = options;
  if (options.givenUrl !== undefined) {
    const url = new URL(options.givenUrl);
    const port = Number(url.port || 4222);
    try {
      await waitForPort(port, { host: url.hostname, timeoutMs: 5_000, intervalMs: 200 });
    } catch {
      throw new StartupError(`NATS_URL ${options.givenUrl} does not answer`);
    }
    return { url: options.givenUrl, spawned: false, stop: async () => {}, kill: () => {} };
  }

  const bin = findOnPath("nats-server", options.path ?? process.env["PATH"] ?? "");
  if (bin === undefined) throw new StartupError(NATS_NOT_FOUND);
  const { port, preferredBusy } = await pickPort(options.preferredPort);
  if (preferredBusy) log.info(`port ${options.preferredPort} is busy; nats-server takes ${port}`);

  const started = performance.now();
  const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(options.dataDir, "nats")];
  // Detached: a Ctrl-C reaches only the launcher, which stops NATS after the services.
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
  const recent: string[] = [];
  const onLine = (line: string) => {
    recent.push(line);
    if (recent.length > 20) recent.shift();
    // nats-server tags its lines: [INF] is routine, [WRN]/[ERR]/[FTL] are not.
    if (/\[(ERR|FTL)\]/.test(line)) log.error(line);
    else if (line.includes("[WRN]")) log.warn(line);
    else log.debug(line);
  };
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream, crlfDelay: Infinity }).on("line", onLine);
  }
  let exited = false;
  const exit = new Promise<void>((done) => {
    child.once("exit", () => {
      exited = true;
      done();
    });
    child.once("error", () => {
      exited = true;
      done();
    });
  });

  try {
    await waitForPort(port, { timeoutMs: 10_000, alive: () => !exited });
  } catch (err) {
    if (child.pid !== undefined) signal(child.pid, "SIGKILL");
    throw new StartupError(
      `nats-server did not start on port ${port}: ${(err as Error).message}\n${recent.join("\n")}`,
    );
  }
  const url = `nats://127.0.0.1:${port}`;
  log.info(`nats-server (JetStream) on port ${port}`, {
    ms: Math.round(performance.now() - started),
    pid: child.pid,
  });
  return {
    url,
    spawned: true,
    pid: child.pid,
    stop: () => stopChild(child, exit, () => exited, log),
    kill: () => {
      if (child.pid !== undefined) signalGroup(child.pid, "SIGKILL");
    },
  };
}

async function stopChild(
  child: ChildProcess,
  exit: Promise<void>,
  exited: () => boolean,
  log: Logger,
) {
  if (exited() || child.pid === undefined) return;
  signal(child.pid, "SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const inTime = await Promise.race([
    exit.then(() => true),
    new Promise<boolean>((done) => {
      timer = setTimeout(() => done(false), 10_000);
    }),
  ]);
  clearTimeout(timer);
  if (!inTime) {
    log.warn("nats-server did not stop in 10 s; killing it");
    signalGroup(child.pid, "SIGKILL");
    await exit;
  }
}

export function findOnPath(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return undefined;
}
