/**
 * Loaded into every service with `--import` by the launcher, so that a service never
 * outlives it, without a line of launcher-specific code in the service itself.
 *
 * Two signals that the launcher is gone, either one enough:
 * - stdin reaches end-of-file: the launcher holds the write end of a pipe and never
 *   writes; the kernel closes it when the launcher dies, however it dies (SIGKILL too);
 * - the parent pid changes (the process was re-parented), checked every second.
 * Then the service gets SIGTERM from itself, so its own graceful shutdown runs; should
 * it have none, or hang, it exits after 10 s.
 *
 * Self-contained (node: built-ins only), so it loads with or without tsx.
 */
const launcherPid = Number(process.env["SHOPMESH_LAUNCHER_PID"] ?? process.ppid);
let gone = false;

function launcherGone(): void {
  if (gone) return;
  gone = true;
  process.stderr.write(
    `${JSON.stringify({ level: 40, time: new Date().toISOString(), pid: process.pid, msg: "launcher gone: shutting down" })}\n`,
  );
  setTimeout(() => process.exit(1), 10_000).unref();
  process.kill(process.pid, "SIGTERM");
}

if (process.ppid !== launcherPid) {
  launcherGone();
} else {
  const stdin = process.stdin;
  stdin.on("end", launcherGone);
  stdin.on("error", launcherGone);
  stdin.resume();
  // Watching must not keep a service alive that has finished on its own.
  (stdin as { unref?: () => void }).unref?.();
  setInterval(() => {
    if (process.ppid !== launcherPid) launcherGone();
  }, 1_000).unref();
}
