/**
 * How nothing the launcher starts outlives it, however the launcher ends:
 * - services load orphan-guard.ts (`--import`) and exit when their stdin pipe from the
 *   launcher closes or they are re-parented;
 * - nats-server and PostgreSQL cannot load code, so a watchdog process (watchdog.ts,
 *   started first, in its own process group) stops what stack.json lists when its pipe
 *   from the launcher closes without a "disarm";
 * - a launcher starting on a data directory whose stack.json names a dead launcher
 *   stops what that one left behind (reapStack), in case the watchdog died with it.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const GUARD = fileURLToPath(new URL("./orphan-guard.ts", import.meta.url));
const WATCHDOG = fileURLToPath(new URL("./watchdog.ts", import.meta.url));

/** Node flags that load the orphan guard into a service. */
export function guardFlags(): string[] {
  return ["--import", GUARD];
}

/** Env telling the guard which process is its launcher. */
export function guardEnv(): Record<string, string> {
  return { SHOPMESH_LAUNCHER_PID: String(process.pid) };
}

export interface Watchdog {
  /** Normal shutdown: the watchdog exits without touching anything. */
  disarm(): void;
}

export function startWatchdog(rootDir: string, stackPath: string): Watchdog {
  const child = spawn(process.execPath, ["--import", "tsx", WATCHDOG, stackPath], {
    cwd: rootDir,
    stdio: ["pipe", "ignore", "inherit"],
    detached: true,
  });
  child.stdin?.on("error", () => {});
  child.on("error", () => {});
  // Never keeps the launcher alive; the launcher exits explicitly.
  child.unref();
  return {
    disarm() {
      child.stdin?.end("disarm\n");
    },
  };
}
