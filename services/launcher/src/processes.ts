/** Small process helpers: liveness, identity (Linux /proc), signals that never throw. */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
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

/**
 * True when process `pid` itself holds a listening TCP socket on `port` (Linux: its
 * fds against /proc/net/tcp{,6}). Replicas sharing a port (SO_REUSEPORT) cannot be
 * told apart by connecting; this can. Undefined where /proc is missing.
 */
export function listensOn(pid: number, port: number): boolean | undefined {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  try {
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
        const cols = line.trim().split(/\s+/);
        // local_address is "ADDR:PORT"; state 0A is LISTEN; the inode is column 9.
        if (cols[1]?.endsWith(`:${hexPort}`) && cols[3] === "0A" && cols[9]) inodes.add(cols[9]);
      }
    }
  } catch {
    return undefined;
  }
  if (inodes.size === 0) return false;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const target = readlinkOrEmpty(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith("socket:[") && inodes.has(target.slice(8, -1))) return true;
    }
  } catch {
    return false;
  }
  return false;
}

function readlinkOrEmpty(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return "";
  }
}
