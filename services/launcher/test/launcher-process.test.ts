/**
 * Supervision as a real process (test/fixtures/launch.ts wires the supervisor, the
 * lifecycle and the orphan guard as main.ts does): the ready line, restarts, and that
 * no child outlives the launcher, whether it is stopped (SIGTERM) or killed (SIGKILL).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { isAlive, type Spawned, spawnNode, waitUntil } from "./helpers.js";

const LAUNCH = fileURLToPath(new URL("./fixtures/launch.ts", import.meta.url));

function launch(services: object[]): Spawned {
  return spawnNode(["--import", "tsx", LAUNCH], {
    ...process.env,
    FIXTURE_SERVICES: JSON.stringify(services),
  });
}

/** Every pid the launcher reported (PIDS lines), in order of appearance. */
function reportedPids(output: string): number[] {
  const pids = new Set<number>();
  for (const match of output.matchAll(/^PIDS (.*)$/gm)) {
    for (const p of JSON.parse(match[1] as string) as { pid: number }[]) pids.add(p.pid);
  }
  return [...pids];
}

let launched: Spawned | undefined;
afterEach(async () => {
  if (launched && launched.child.exitCode === null) {
    launched.child.kill("SIGKILL");
    await launched.exited;
  }
  launched = undefined;
});

describe("launcher process", () => {
  it("prints the ready line once, even when a service restarts after it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "launcher-"));
    const once = join(dir, "crashed");
    launched = launch([
      { name: "alpha", env: { READY_AFTER_MS: "50" }, stage: 0 },
      {
        name: "beta",
        env: { READY_AFTER_MS: "50", CRASH_AFTER_MS: "300", CRASH_ONCE_FILE: once },
        stage: 1,
      },
    ]);
    await launched.waitFor(/fixtures ready/);
    await launched.waitFor(
      /beta exited \(code 3\) after [\d.]+ m?s; restarting in 100 ms \(restart #1\)/,
    );
    // Back up: a second ready line from beta itself, none from the launcher.
    await waitUntil(
      () => (launched?.output().match(/\[beta\].*INFO\s+ready/g) ?? []).length === 2,
      10_000,
      "beta ready again",
    );
    expect(launched.output().match(/fixtures ready/g)).toHaveLength(1);
    rmSync(dir, { recursive: true, force: true });
  });

  it("SIGTERM stops every child, then the launcher exits 0", async () => {
    launched = launch([
      { name: "alpha", env: { READY_AFTER_MS: "50" }, stage: 0 },
      { name: "beta", env: { READY_AFTER_MS: "50" }, stage: 1 },
      { name: "gamma", env: { READY_AFTER_MS: "50", IGNORE_SIGTERM: "1" }, stage: 1 },
    ]);
    await launched.waitFor(/fixtures ready/);
    const pids = reportedPids(launched.output());
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(isAlive(pid)).toBe(true);

    launched.child.kill("SIGTERM");
    const { code } = await launched.exited;
    expect(code).toBe(0);
    // gamma ignored SIGTERM and was killed after the bound; nothing is left.
    expect(launched.output()).toMatch(/gamma did not stop within 2\.0 s; killing it/);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });

  it("a launcher killed with SIGKILL leaves no service behind (orphan guard)", async () => {
    launched = launch([
      { name: "alpha", env: { READY_AFTER_MS: "50" }, stage: 0 },
      { name: "beta", env: { READY_AFTER_MS: "50" }, stage: 0 },
    ]);
    await launched.waitFor(/fixtures ready/);
    const pids = reportedPids(launched.output());
    expect(pids).toHaveLength(2);

    launched.child.kill("SIGKILL");
    await launched.exited;
    // End-of-file on stdin is immediate; the parent-pid check would catch it in 1 s.
    await waitUntil(() => pids.every((pid) => !isAlive(pid)), 5_000, "children gone");
  });
});
