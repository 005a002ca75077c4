/**
 * The supervisor: runs a set of services as child processes, as Kubernetes would on
 * one machine. It starts them stage by stage (a stage starts once the previous one is
 * ready), detects readiness from a `"msg":"ready"` log line or, failing that, from the
 * service's port accepting connections, restarts a process that exits with exponential
 * backoff, and stops them all with SIGTERM, then SIGKILL after a bound.
 *
 * It knows nothing about shopmesh: the services and their commands are passed in, so
 * tests drive it with small fixture scripts.
 *
 * Each child is spawned `detached` (its own process group, so a Ctrl-C in the terminal
 * reaches only the launcher, which stops services in order) with a stdin pipe it never
 * writes to: when the launcher dies, even by SIGKILL, that pipe reaches end-of-file,
 * which the orphan guard (orphan-guard.ts, loaded with --import) turns into an exit.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { canConnect } from "./net.js";
import type { Fields } from "./output.js";
import { listensOn, signal, signalGroup } from "./processes.js";

export interface ServiceSpec {
  name: string;
  /** Which replica of `name` this is (0 when there is one). */
  replica?: number;
  /** How its lines and log messages name it, e.g. "orders-1". Default: `name`. */
  label?: string;
  command: string;
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** The TCP port it serves on: probed as the readiness fallback, and reported. */
  port?: number;
  /** Its admin (metrics, health) port, reported in the process list. */
  adminPort?: number;
  /**
   * Probe `port` by connecting (default true); false when replicas share the port: then
   * only this process listening on it counts (Linux), besides the "ready" line.
   */
  probePort?: boolean;
  /** Start order: a stage starts when every service of the previous ones is ready. */
  stage?: number;
}

export interface BackoffPolicy {
  /** Delay before the first restart; doubled for each further one. */
  initialMs: number;
  maxMs: number;
  /** A process that stayed up this long starts again from `initialMs`. */
  resetAfterMs: number;
}

export interface RunningProcess {
  service: string;
  replica: number;
  pid: number;
  port?: number;
  adminPort?: number;
  /** It said "ready" (or its port answered) since it was last started. */
  ready: boolean;
}

export interface SupervisorLog {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

export interface SupervisorOptions {
  services: readonly ServiceSpec[];
  backoff?: Partial<BackoffPolicy>;
  /** How long a service may take to exit after SIGTERM before it is killed. */
  stopTimeoutMs?: number;
  /** How long a stage may take to become ready before the next one starts anyway. */
  stageTimeoutMs?: number;
  /** Interval of the port probe. */
  probeIntervalMs?: number;
  isReadyLine?: (line: string) => boolean;
  /** Every line a child writes, stdout and stderr. */
  onLine?: (service: string, line: string) => void;
  /** Called when the set of running processes changes (spawn, exit). */
  onChange?: (processes: RunningProcess[]) => void;
  log: SupervisorLog;
}

export interface Supervisor {
  /** Starts every stage in order; resolves once the last stage has been started. */
  start(): Promise<void>;
  /** Resolves the first time every service is ready at once. */
  allReady(): Promise<void>;
  processes(): RunningProcess[];
  /** SIGTERM to all, SIGKILL to what is left after the bound; resolves when all are gone. */
  stop(): Promise<void>;
  /** SIGKILL to every process group now (a second Ctrl-C). */
  kill(): void;
}

export const DEFAULT_BACKOFF: BackoffPolicy = {
  initialMs: 250,
  maxMs: 10_000,
  resetAfterMs: 30_000,
};

/** A pino line whose msg is "ready". */
export function isPinoReadyLine(line: string): boolean {
  if (!line.includes('"ready"')) return false;
  try {
    return (JSON.parse(line) as { msg?: unknown }).msg === "ready";
  } catch {
    return false;
  }
}

interface Managed {
  spec: ServiceSpec;
  child?: ChildProcess;
  startedAt: number;
  ready: boolean;
  /** Restarts since the last reset of the backoff. */
  attempt: number;
  restarts: number;
  restartTimer?: NodeJS.Timeout;
  probeTimer?: NodeJS.Timeout;
  exited?: Promise<void>;
  onReady: Set<() => void>;
}

export function createSupervisor(options: SupervisorOptions): Supervisor {
  const backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
  const stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
  const stageTimeoutMs = options.stageTimeoutMs ?? 60_000;
  const probeIntervalMs = options.probeIntervalMs ?? 250;
  const isReadyLine = options.isReadyLine ?? isPinoReadyLine;
  const { log } = options;

  const managed: Managed[] = options.services.map((spec) => ({
    spec,
    startedAt: 0,
    ready: false,
    attempt: 0,
    restarts: 0,
    onReady: new Set(),
  }));
  let stopping = false;
  let resolveAllReady = () => {};
  const allReady = new Promise<void>((done) => {
    resolveAllReady = done;
  });
  if (managed.length === 0) resolveAllReady();

  const processes = (): RunningProcess[] =>
    managed.flatMap((m) =>
      m.child?.pid === undefined
        ? []
        : [
            {
              service: m.spec.name,
              replica: m.spec.replica ?? 0,
              pid: m.child.pid,
              port: m.spec.port,
              adminPort: m.spec.adminPort,
              ready: m.ready,
            },
          ],
    );
  const changed = () => options.onChange?.(processes());

  const markReady = (m: Managed, child: ChildProcess, via: "log line" | "port") => {
    if (m.ready || m.child !== child) return;
    m.ready = true;
    clearTimeout(m.probeTimer);
    changed();
    log.debug(`${label(m)} ready (${via})`, {
      pid: child.pid,
      ms: Date.now() - m.startedAt,
    });
    for (const notify of m.onReady) notify();
    m.onReady.clear();
    if (managed.every((x) => x.ready)) resolveAllReady();
  };

  // The port answering twice in a row: a service that logs "ready" right after it
  // listens gets one interval to say so first.
  const probe = (m: Managed, child: ChildProcess, answered = false) => {
    const port = m.spec.port;
    if (port === undefined) return;
    m.probeTimer = setTimeout(async () => {
      if (m.child !== child || m.ready) return;
      // A shared port answers as soon as a sibling listens: ask whether this one does.
      const answers =
        m.spec.probePort === false
          ? child.pid !== undefined && listensOn(child.pid, port) === true
          : await canConnect(port);
      if (answers && answered) markReady(m, child, "port");
      else probe(m, child, answers);
    }, probeIntervalMs);
  };

  const spawnService = (m: Managed) => {
    const { spec } = m;
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    m.child = child;
    m.startedAt = Date.now();
    m.ready = false;
    // The pipe exists only to reach end-of-file when the launcher dies; never written.
    child.stdin?.on("error", () => {});
    const onLine = (line: string) => {
      options.onLine?.(label(m), line);
      if (!m.ready && isReadyLine(line)) markReady(m, child, "log line");
    };
    readLines(child.stdout, onLine);
    readLines(child.stderr, onLine);

    let resolveExited = () => {};
    m.exited = new Promise((done) => {
      resolveExited = done;
    });
    let gone = false;
    const onGone = (code: number | null, sig: NodeJS.Signals | null, err?: Error) => {
      if (gone) return;
      gone = true;
      resolveExited();
      exited(m, child, code, sig, err);
    };
    child.once("spawn", () => {
      log.debug(`${label(m)} started`, { pid: child.pid, port: spec.port });
      changed();
      probe(m, child);
    });
    child.once("error", (err) => onGone(null, null, err));
    child.once("exit", (code, sig) => onGone(code, sig));
  };

  const exited = (
    m: Managed,
    child: ChildProcess,
    code: number | null,
    sig: NodeJS.Signals | null,
    err?: Error,
  ) => {
    if (m.child !== child) return;
    clearTimeout(m.probeTimer);
    m.child = undefined;
    m.ready = false;
    // Whatever the service left behind in its process group goes with it.
    if (child.pid !== undefined) signalGroup(child.pid, "SIGKILL");
    changed();
    if (stopping) return;
    const uptimeMs = Date.now() - m.startedAt;
    if (uptimeMs >= backoff.resetAfterMs) m.attempt = 0;
    const delayMs = Math.min(backoff.initialMs * 2 ** m.attempt, backoff.maxMs);
    m.attempt += 1;
    m.restarts += 1;
    const how = err ? `failed to start: ${err.message}` : `exited (${describeExit(code, sig)})`;
    log.warn(
      `${label(m)} ${how} after ${formatMs(uptimeMs)}; restarting in ${formatMs(delayMs)} (restart #${m.restarts})`,
      {
        service: m.spec.name,
        replica: m.spec.replica ?? 0,
        code,
        signal: sig,
        uptimeMs,
        delayMs,
        restart: m.restarts,
      },
    );
    m.restartTimer = setTimeout(() => {
      m.restartTimer = undefined;
      if (!stopping) spawnService(m);
    }, delayMs);
  };

  const waitReady = (m: Managed, timeoutMs: number): Promise<boolean> => {
    if (m.ready) return Promise.resolve(true);
    return new Promise((done) => {
      const timer = setTimeout(() => {
        m.onReady.delete(notify);
        done(false);
      }, timeoutMs);
      const notify = () => {
        clearTimeout(timer);
        done(true);
      };
      m.onReady.add(notify);
    });
  };

  const start = async () => {
    const stages = [...new Set(managed.map((m) => m.spec.stage ?? 0))].sort((a, b) => a - b);
    for (const [i, stage] of stages.entries()) {
      if (stopping) return;
      const group = managed.filter((m) => (m.spec.stage ?? 0) === stage);
      for (const m of group) spawnService(m);
      if (i === stages.length - 1) break;
      const ready = await Promise.all(group.map((m) => waitReady(m, stageTimeoutMs)));
      const late = group.filter((_, j) => !ready[j]).map(label);
      if (late.length > 0 && !stopping) {
        log.warn(
          `${late.join(", ")} not ready after ${formatMs(stageTimeoutMs)}; starting the rest anyway`,
        );
      }
    }
  };

  const stopOne = async (m: Managed) => {
    const child = m.child;
    const pid = child?.pid;
    if (child === undefined || pid === undefined) return;
    const exitedOnce = m.exited ?? Promise.resolve();
    signal(pid, "SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([
      exitedOnce.then(() => true),
      new Promise<boolean>((done) => {
        timer = setTimeout(() => done(false), stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!inTime) {
      log.warn(`${label(m)} did not stop within ${formatMs(stopTimeoutMs)}; killing it`, {
        pid,
      });
      signalGroup(pid, "SIGKILL");
      await exitedOnce;
    }
  };

  return {
    start,
    allReady: () => allReady,
    processes,
    async stop() {
      stopping = true;
      for (const m of managed) {
        clearTimeout(m.restartTimer);
        clearTimeout(m.probeTimer);
        for (const notify of m.onReady) notify();
      }
      await Promise.all(managed.map(stopOne));
    },
    kill() {
      stopping = true;
      for (const m of managed) {
        clearTimeout(m.restartTimer);
        if (m.child?.pid !== undefined) signalGroup(m.child.pid, "SIGKILL");
      }
    },
  };
}

function label(m: Managed): string {
  return m.spec.label ?? m.spec.name;
}

function readLines(stream: Readable | null, onLine: (line: string) => void) {
  if (stream === null) return;
  createInterface({ input: stream, crlfDelay: Infinity }).on("line", onLine);
}

export function describeExit(code: number | null, sig: NodeJS.Signals | null): string {
  return sig ? `signal ${sig}` : `code ${code}`;
}

export function formatMs(ms: number): string {
  return ms < 1_000 ? `${Math.round(ms)} ms` : `${(ms / 1_000).toFixed(1)} s`;
}
