/**
 * Reads a V8 `.cpuprofile` (node --cpu-prof) and says where the time went: self
 * time per function and per origin (a package under node_modules, a project file,
 * node's internals, GC), and inclusive time per function of our code and packages
 * (the share of samples with that function anywhere on the stack). Idle time is left out of the percentages.
 *
 * A window (start and end in microseconds of CLOCK_MONOTONIC, which is both V8's
 * profile clock and `process.hrtime` on Linux) keeps only the samples taken inside
 * it, so start-up (module loading, tsx transpiling) does not drown a scenario.
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface Share {
  name: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  /** Wall time covered by the profile. */
  wallMs: number;
  /**
   * Sampled time the thread was not idle in the event loop. V8 samples on wall time,
   * so on a busy machine this includes time runnable but waiting for a core.
   */
  busyMs: number;
  byOrigin: Share[];
  selfTop: Share[];
  inclusiveTop: Share[];
  /**
   * With `under`: the samples with a frame named like `under` on the stack, by the
   * nearest frame above it from another origin — who called into it (e.g. `under`
   * "sqlToQuery": which of our statements make drizzle build SQL).
   */
  callersOfUnder?: Share[];
}

/** "node_modules/@grpc/grpc-js/build/src/x.js" → "@grpc/grpc-js"; project files by folder. */
export function originOf(url: string, functionName: string): string {
  if (url === "") {
    if (functionName.startsWith("(")) return functionName; // (garbage collector), (program)
    return "(native)";
  }
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "/node_modules/".length).split("/");
    return rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  if (url.startsWith("node:")) return "node:internal";
  const svc = /\/services\/([^/]+)\/src\//.exec(url);
  if (svc) return `shopmesh/${svc[1]}`;
  if (url.includes("/gen/")) return "shopmesh/gen";
  return url.replace(/^file:\/\//, "");
}

function frameName(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  if (url === "") return functionName || "(anonymous)";
  const short = url.replace(/^file:\/\//, "").replace(/^.*\/node_modules\//, "");
  const file = short.includes("/services/") ? short.slice(short.indexOf("/services/") + 1) : short;
  return `${functionName || "(anonymous)"} ${file}:${lineNumber + 1}`;
}

/** Now, in the profile clock's microseconds. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export function summarizeProfile(
  path: string,
  top = 15,
  window?: { startUs: number; endUs: number },
  under?: string,
): ProfileSummary {
  const p = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  const from = window?.startUs ?? Number.NEGATIVE_INFINITY;
  const to = window?.endUs ?? Number.POSITIVE_INFINITY;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<string, number>();
  const origin = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const callers = new Map<string, number>();
  let busy = 0;
  let at = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    at += p.timeDeltas[i] ?? 0;
    if (at < from || at > to) continue;
    const node = byId.get(p.samples[i] as number);
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000;
    if (node === undefined || node.callFrame.functionName === "(idle)") continue;
    busy += dt;
    const name = frameName(node);
    self.set(name, (self.get(name) ?? 0) + dt);
    const o = originOf(node.callFrame.url, node.callFrame.functionName);
    origin.set(o, (origin.get(o) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id);
      // Inclusive time is for our code and the packages: node's own frames
      // (processTicksAndRejections, module loading) would top every list.
      if (n === undefined || n.callFrame.url === "" || n.callFrame.url.startsWith("node:"))
        continue;
      const f = frameName(n);
      if (seen.has(f)) continue;
      seen.add(f);
      inclusive.set(f, (inclusive.get(f) ?? 0) + dt);
    }
    if (under !== undefined) {
      const caller = callerOf(node.id, under, byId, parent);
      if (caller !== undefined) callers.set(caller, (callers.get(caller) ?? 0) + dt);
    }
  }
  const shares = (m: Map<string, number>, k: number): Share[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, ms]) => ({
        name,
        ms: Math.round(ms),
        pct: busy > 0 ? Math.round((ms / busy) * 1000) / 10 : 0,
      }));
  return {
    wallMs: Math.round((Math.min(to, p.endTime) - Math.max(from, p.startTime)) / 1000),
    busyMs: Math.round(busy),
    byOrigin: shares(origin, top),
    selfTop: shares(self, top),
    inclusiveTop: shares(inclusive, top * 2),
    ...(under === undefined ? {} : { callersOfUnder: shares(callers, top) }),
  };
}

/**
 * Above the first frame on `id`'s stack whose name contains `under`, the nearest frame
 * of another origin that is not node's own ("(none)" when there is none); undefined when
 * no frame matches.
 */
function callerOf(
  id: number,
  under: string,
  byId: Map<number, ProfileNode>,
  parent: Map<number, number>,
): string | undefined {
  let at: number | undefined = id;
  while (at !== undefined && !frameName(byId.get(at) as ProfileNode).includes(under)) {
    at = parent.get(at);
  }
  if (at === undefined) return undefined;
  const { url, functionName } = (byId.get(at) as ProfileNode).callFrame;
  const own = originOf(url, functionName);
  for (let up = parent.get(at); up !== undefined; up = parent.get(up)) {
    const n = byId.get(up) as ProfileNode;
    const o = originOf(n.callFrame.url, n.callFrame.functionName);
    if (o !== own && o !== "node:internal" && n.callFrame.url !== "") return frameName(n);
  }
  return "(none)";
}
