/**
 * Runs a whole launcher (what `npm start` runs) as a child process in its own process
 * group and waits for its "shopmesh ready" line. The one way the e2e tests
 * (services/edge/test/stack-harness.ts, through `npm start`) and the benchmarks
 * (bench/lib/stack.ts, the launcher on the benchmark's Node) start the stack.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";

export interface LauncherRun {
  child: ChildProcess;
  /** Everything the launcher printed so far (stdout and stderr). */
  output(): string;
  /** Milliseconds from spawn to the ready line. */
  startMs: number;
  /** SIGTERM to the process group (SIGKILL after `killAfterMs`); resolves once it exited. */
  stop(): Promise<void>;
}

export async function runLauncher(options: {
  /** The command and its arguments, e.g. ["npm", "start"]. */
  argv: [string, ...string[]];
  cwd: string;
  env: NodeJS.ProcessEnv;
  readyTimeoutMs: number;
  /** Called with each non-empty line the launcher prints. */
  onLine?: (line: string) => void;
  killAfterMs?: number;
}): Promise<LauncherRun> {
  const [command, ...args] = options.argv;
  const started = performance.now();
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  let ready: (() => void) | undefined;
  const onData = (d: Buffer) => {
    const text = d.toString();
    output += text;
    if (options.onLine) for (const line of text.split("\n")) if (line.trim()) options.onLine(line);
    if (ready !== undefined && output.includes("shopmesh ready")) ready();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  const exited = once(child, "exit").then(([code]) => code as number | null);

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const group = (signal: NodeJS.Signals) => {
      try {
        process.kill(-(child.pid as number), signal);
      } catch {
        // The group is gone already.
      }
    };
    group("SIGTERM");
    const timer = setTimeout(() => group("SIGKILL"), options.killAfterMs ?? 60_000);
    await exited;
    clearTimeout(timer);
  };

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`stack not ready in ${options.readyTimeoutMs / 1000} s:\n${output}`)),
        options.readyTimeoutMs,
      );
      ready = () => {
        clearTimeout(timer);
        resolve();
      };
      if (output.includes("shopmesh ready")) ready();
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${options.argv.join(" ")} exited with ${code} before ready:\n${output}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  } finally {
    ready = undefined;
  }
  return { child, output: () => output, startMs: performance.now() - started, stop };
}
