/**
 * The supervisor in-process, over real child processes (test/fixtures/service.mjs):
 * start order, readiness (log line and port fallback), restarts with backoff, stop.
 */
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../src/net.js";
import { createSupervisor, type ServiceSpec, type Supervisor } from "../src/supervisor.js";
import { isAlive, waitUntil } from "./helpers.js";

const SCRIPT = fileURLToPath(new URL("./fixtures/service.mjs", import.meta.url));

function fixture(name: string, env: Record<string, string>, extra: Partial<ServiceSpec> = {}) {
  return {
    name,
    command: process.execPath,
    args: [SCRIPT],
    env: { ...process.env, ...env },
    ...extra,
  } satisfies ServiceSpec;
}

/** A log that remembers every entry, in order, with its time. */
function recorder() {
  const entries: { at: number; level: string; msg: string }[] = [];
  const lines: { at: number; service: string; line: string }[] = [];
  const entry = (level: string) => (msg: string) => {
    entries.push({ at: Date.now(), level, msg });
  };
  return {
    entries,
    lines,
    log: { debug: entry("debug"), info: entry("info"), warn: entry("warn"), error: entry("error") },
    onLine: (service: string, line: string) => lines.push({ at: Date.now(), service, line }),
    at: (msg: string) => entries.find((e) => e.msg.startsWith(msg))?.at,
  };
}

let running: Supervisor | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
});

describe("supervisor", () => {
  it("starts stage by stage and reports all ready once every service is", async () => {
    const rec = recorder();
    const supervisor = createSupervisor({
      services: [
        fixture("first", { READY_AFTER_MS: "300" }, { stage: 0 }),
        fixture("middle-a", { READY_AFTER_MS: "200" }, { stage: 1 }),
        fixture("middle-b", { READY_AFTER_MS: "400" }, { stage: 1 }),
        fixture("last", { READY_AFTER_MS: "100" }, { stage: 2 }),
      ],
      log: rec.log,
      onLine: rec.onLine,
    });
    running = supervisor;
    let readyAt = 0;
    const allReady = supervisor.allReady().then(() => {
      readyAt = Date.now();
    });
    await supervisor.start();
    await allReady;

    const ready = (name: string) => rec.at(`${name} ready`) as number;
    const started = (name: string) => rec.at(`${name} started`) as number;
    expect(started("middle-a")).toBeGreaterThanOrEqual(ready("first"));
    expect(started("middle-b")).toBeGreaterThanOrEqual(ready("first"));
    expect(started("last")).toBeGreaterThanOrEqual(Math.max(ready("middle-a"), ready("middle-b")));
    // Not before the last one is ready.
    expect(readyAt).toBeGreaterThanOrEqual(ready("last"));
    expect(rec.entries.find((e) => e.msg === "first ready (log line)")).toBeDefined();
    // The children's lines are passed on as written.
    expect(rec.lines.some((l) => l.service === "last" && l.line.includes('"msg":"ready"'))).toBe(
      true,
    );
    expect(supervisor.processes().map((p) => p.service)).toEqual([
      "first",
      "middle-a",
      "middle-b",
      "last",
    ]);
  });

  it("takes a port that accepts connections as ready when no ready line comes", async () => {
    const rec = recorder();
    const port = await freePort();
    const supervisor = createSupervisor({
      services: [fixture("silent", { LISTEN: "1", PORT: String(port) }, { port })],
      log: rec.log,
      probeIntervalMs: 50,
    });
    running = supervisor;
    await supervisor.start();
    await supervisor.allReady();
    expect(rec.entries.map((e) => e.msg)).toContain("silent ready (port)");
  });

  it("restarts a crashing service with exponential backoff, logging each exit", async () => {
    const rec = recorder();
    const supervisor = createSupervisor({
      services: [fixture("crashy", { CRASH_AFTER_MS: "50", CRASH_CODE: "3" })],
      backoff: { initialMs: 100, maxMs: 400, resetAfterMs: 10_000 },
      log: rec.log,
    });
    running = supervisor;
    await supervisor.start();
    const restarts = () => rec.entries.filter((e) => e.level === "warn");
    await waitUntil(() => restarts().length >= 5, 15_000, "five restarts");
    await supervisor.stop();

    const warned = restarts().slice(0, 5);
    for (const entry of warned)
      expect(entry.msg).toMatch(/^crashy exited \(code 3\) after [\d.]+ m?s;/);
    expect(warned.map((e) => e.msg.match(/restarting in (\d+) ms/)?.[1])).toEqual([
      "100",
      "200",
      "400",
      "400",
      "400",
    ]);
    expect(warned.map((e) => e.msg.match(/restart #(\d+)/)?.[1])).toEqual([
      "1",
      "2",
      "3",
      "4",
      "5",
    ]);
    // The delay is real: each new process starts no sooner than announced.
    const spawns = rec.entries.filter((e) => e.msg === "crashy started").map((e) => e.at);
    for (const [i, delay] of [100, 200, 400].entries()) {
      const exit = warned[i]?.at as number;
      expect((spawns[i + 1] as number) - exit).toBeGreaterThanOrEqual(delay - 5);
    }
  });

  it("starts the backoff over for a service that stayed up long enough", async () => {
    const rec = recorder();
    const supervisor = createSupervisor({
      services: [fixture("flaky", { CRASH_AFTER_MS: "300" })],
      backoff: { initialMs: 50, maxMs: 1_000, resetAfterMs: 200 },
      log: rec.log,
    });
    running = supervisor;
    await supervisor.start();
    const restarts = () => rec.entries.filter((e) => e.level === "warn");
    await waitUntil(() => restarts().length >= 3, 10_000, "three restarts");
    expect(restarts().map((e) => e.msg.match(/restarting in (\d+) ms/)?.[1])).toEqual(
      Array(restarts().length).fill("50"),
    );
  });

  it("stops every process, and what they spawned, with SIGTERM", async () => {
    const rec = recorder();
    const supervisor = createSupervisor({
      services: [
        fixture("one", { READY_AFTER_MS: "10", GRANDCHILD: "1" }),
        fixture("two", { READY_AFTER_MS: "10" }),
      ],
      log: rec.log,
      onLine: rec.onLine,
    });
    running = supervisor;
    await supervisor.start();
    await supervisor.allReady();
    const pids = supervisor.processes().map((p) => p.pid);
    const grandchild = Number(
      rec.lines.map((l) => l.line.match(/"grandchild":(\d+)/)?.[1]).find(Boolean),
    );
    expect(pids).toHaveLength(2);
    expect(isAlive(grandchild)).toBe(true);

    await supervisor.stop();
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(rec.lines.filter((l) => l.line.includes('"msg":"stopped"'))).toHaveLength(2);
    await waitUntil(() => !isAlive(grandchild), 2_000, "grandchild gone");
    expect(supervisor.processes()).toEqual([]);
  });

  it("kills a service that ignores SIGTERM once the bound has passed", async () => {
    const rec = recorder();
    const supervisor = createSupervisor({
      services: [fixture("stubborn", { READY_AFTER_MS: "10", IGNORE_SIGTERM: "1" })],
      stopTimeoutMs: 500,
      log: rec.log,
    });
    running = supervisor;
    await supervisor.start();
    await supervisor.allReady();
    const [proc] = supervisor.processes();
    const started = Date.now();
    await supervisor.stop();
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(isAlive(proc?.pid as number)).toBe(false);
    expect(rec.entries.map((e) => e.msg)).toContain(
      "stubborn did not stop within 500 ms; killing it",
    );
  });

  it("does not restart anything once stopping", async () => {
    const rec = recorder();
    const supervisor = createSupervisor({
      services: [fixture("quick", { READY_AFTER_MS: "10", CRASH_AFTER_MS: "5000" })],
      log: rec.log,
      backoff: { initialMs: 10 },
    });
    running = supervisor;
    await supervisor.start();
    await supervisor.allReady();
    await supervisor.stop();
    await new Promise((r) => setTimeout(r, 200));
    expect(supervisor.processes()).toEqual([]);
    expect(rec.entries.filter((e) => e.level === "warn")).toEqual([]);
  });
});
