/**
 * What the machine is and how busy it is: CPU model and count, node version, the
 * load average, resident memory of a process, and CPU accounting per scenario from
 * /proc (machine-wide busy time, and the share of it used by each process we know:
 * the load client, each service, PostgreSQL, NATS), so that "someone else was
 * using the CPU" shows in the numbers instead of being guessed. Linux only for the
 * /proc parts; elsewhere they come back empty.
 */
import { readdirSync, readFileSync } from "node:fs";
import * as os from "node:os";

export interface MachineInfo {
  hostname: string;
  platform: string;
  kernel: string;
  cpus: number;
  cpuModel: string;
  memoryGb: number;
  node: string;
  v8: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    platform: `${os.platform()} ${os.arch()}`,
    kernel: os.release(),
    cpus: os.availableParallelism(),
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    memoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    v8: process.versions.v8,
  };
}

/** 1, 5 and 15 minute load averages. */
export function loadAverage(): [number, number, number] {
  const [a = 0, b = 0, c = 0] = os.loadavg();
  return [round2(a), round2(b), round2(c)];
}

/** Resident set size of a process in MB (VmRSS), or undefined when it is gone. */
export function rssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m?.[1] === undefined ? undefined : Math.round(Number(m[1]) / 102.4) / 10;
  } catch {
    return undefined;
  }
}

/** CPU time a process has used so far, in ms (user + system), or undefined when it is not here. */
export function cpuMsOf(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** A process to account CPU to; `withChildren` adds its direct children (PostgreSQL backends). */
export interface Tracked {
  label: string;
  pid: number;
  withChildren?: boolean;
}

interface Snapshot {
  at: number;
  busy: number;
  total: number;
  procs: Map<number, { ppid: number; ticks: number }>;
}

const TICKS_PER_SECOND = 100; // USER_HZ; 100 on every Linux we run on

function snapshot(): Snapshot {
  const procs = new Map<number, { ppid: number; ticks: number }>();
  let busy = 0;
  let total = 0;
  try {
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]?.trim().split(/\s+/).slice(1);
    const v = (cpu ?? []).map(Number);
    // user nice system idle iowait irq softirq steal
    total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    busy = total - (v[3] ?? 0) - (v[4] ?? 0);
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const s = readFileSync(`/proc/${name}/stat`, "utf8");
        const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
        procs.set(Number(name), {
          ppid: Number(f[1]),
          ticks: Number(f[11]) + Number(f[12]),
        });
      } catch {
        // exited meanwhile
      }
    }
  } catch {
    // not Linux
  }
  return { at: performance.now(), busy, total, procs };
}

export interface CpuUsage {
  seconds: number;
  /** Cores busy on average, machine-wide (2.0 = both cores of a 2-core machine). */
  machineCores: number;
  /** Cores used by each tracked label. */
  byLabel: Record<string, number>;
  /** machineCores minus everything tracked: other work on the machine (and the kernel). */
  otherCores: number;
}

/** Starts CPU accounting; call the returned function at the end of the window. */
export function startCpuAccounting(tracked: () => Tracked[]): () => CpuUsage {
  const a = snapshot();
  return () => {
    const b = snapshot();
    const seconds = (b.at - a.at) / 1000;
    const cores = (ticks: number) => round2(ticks / TICKS_PER_SECOND / seconds);
    const byLabel: Record<string, number> = {};
    let trackedTicks = 0;
    const counted = new Set<number>();
    const delta = (pid: number) => {
      if (counted.has(pid)) return 0;
      counted.add(pid);
      const after = b.procs.get(pid)?.ticks;
      if (after === undefined) return 0;
      return after - (a.procs.get(pid)?.ticks ?? 0);
    };
    for (const t of tracked()) {
      let ticks = delta(t.pid);
      if (t.withChildren) {
        for (const [pid, p] of b.procs) if (p.ppid === t.pid) ticks += delta(pid);
      }
      byLabel[t.label] = round2((byLabel[t.label] ?? 0) + cores(ticks));
      trackedTicks += ticks;
    }
    const machineTicks = ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * os.cpus().length;
    const machineCores = round2(machineTicks);
    return {
      seconds: round2(seconds),
      machineCores,
      byLabel,
      otherCores: round2(Math.max(0, machineCores - cores(trackedTicks))),
    };
  };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
