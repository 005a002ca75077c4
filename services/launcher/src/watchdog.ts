/**
 * The watchdog: a small process the launcher starts first, in its own process group,
 * holding the read end of a pipe from the launcher. When the pipe reaches end-of-file
 * without the launcher having said "disarm" first, the launcher died without cleaning
 * up (SIGKILL, OOM): the watchdog stops what stack.json lists — nats-server and the
 * embedded PostgreSQL, which cannot load the services' orphan guard, and any service
 * still up — and exits.
 *
 * Usage: node --import tsx watchdog.ts <path of stack.json>
 */
import { rmSync } from "node:fs";
import { readStackFile, reapStack } from "./stack-file.js";

const stackPath = process.argv[2];
let disarmed = false;

async function launcherGone(): Promise<void> {
  if (disarmed || stackPath === undefined) return;
  const stack = readStackFile(stackPath);
  if (stack === undefined) return;
  const stopped = await reapStack(stack, { servicesStopThemselves: true });
  // Nothing it lists runs any more.
  rmSync(stackPath, { force: true });
  if (stopped.length > 0) {
    process.stderr.write(
      `[watchdog] launcher (pid ${stack.launcherPid}) died; cleaned up after it: ${stopped.join(", ")}\n`,
    );
  }
}

process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  if (chunk.includes("disarm")) disarmed = true;
});
let ended = false;
const onEnd = () => {
  if (ended) return;
  ended = true;
  launcherGone().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`[watchdog] ${String(err)}\n`);
      process.exit(1);
    },
  );
};
process.stdin.on("end", onEnd);
process.stdin.on("error", onEnd);
