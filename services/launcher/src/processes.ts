/** Small process helpers: liveness, identity (Linux /proc), signals that never throw. */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** True while `pid` exists (signal 0 checks without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  return !isZombie(pid);
}

/** An exited process its parent has not reaped yet (Linux): gone, for our purposes. */
function isZombie(pid: number): boolean {
  try {
    // "pid (comm) S ...": the state follows the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return false;
  }
}

/**
 * True when `pid` is alive and its command line contains `token`, so a recycled pid
 * is never taken for ours. Where /proc is missing (macOS), liveness alone decides.
 */
export function isOurs(pid: number, token: string): boolean {
  if (!isAlive(pid)) return false;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return process.platform !== "linux";
  }
  return cmdline.includes(token);
}

/** process.kill without the throw when the process is already gone. */
export function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Signals the whole process group led by `pid` (children spawned `detached` lead one). */
export function signalGroup(pid: number, sig: NodeJS.Signals): boolean {
  return signal(-pid, sig);
}

/** Resolves true once `pid` is gone, false if it is still there after `timeoutMs`. */
export async function waitGone(pid: number, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
  return true;
}
