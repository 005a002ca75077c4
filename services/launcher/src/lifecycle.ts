/**
 * Start-up and shutdown order for the launcher. What start-up acquires registers how
 * to release it (`onStop`); a stop (SIGINT, SIGTERM, SIGHUP, the launcher's parent
 * going away, or a failed start-up) waits for start-up to settle, then releases
 * everything last-acquired-first and exits. A second signal kills what is left at once.
 */
import type { Logger } from "./output.js";

export interface Lifecycle {
  /** Runs at stop, in reverse order of registration. `kill` runs on a second signal. */
  onStop(name: string, stop: () => Promise<void>, kill?: () => void): void;
  /** True once a stop has begun: start-up checks it between steps. */
  readonly stopping: boolean;
  /** Runs start-up; a StartupError (or any error) stops everything and exits 1. */
  run(startup: () => Promise<void>): void;
}

interface Step {
  name: string;
  stop: () => Promise<void>;
  kill?: () => void;
}

export function createLifecycle(options: {
  log: Logger;
  /** Log line for a failed start-up (a StartupError's message is meant for people). */
  describeError?: (err: unknown) => string;
  exit?: (code: number) => void;
}): Lifecycle {
  const { log } = options;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const steps: Step[] = [];
  let stopping = false;
  let startup: Promise<void> = Promise.resolve();

  const stop = async (reason: string, code: number) => {
    if (stopping) return;
    stopping = true;
    log.info(`stopping (${reason})`);
    await startup.catch(() => undefined);
    for (const step of steps.reverse()) {
      const started = performance.now();
      try {
        await step.stop();
        log.debug(`${step.name} stopped`, { ms: Math.round(performance.now() - started) });
      } catch (err) {
        code = 1;
        log.error(`stopping ${step.name} failed: ${(err as Error).message}`);
      }
    }
    log.info("stopped");
    exit(code);
  };

  // A Ctrl-C reaches the launcher more than once: from the terminal and again from
  // the wrappers relaying it (npm, tsx). Only a signal well after the first one is a
  // person insisting.
  let firstSignalAt: number | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (firstSignalAt === undefined) {
      firstSignalAt = Date.now();
      void stop(sig, 0);
      return;
    }
    if (Date.now() - firstSignalAt < 1_000) return;
    log.warn(`${sig} again: killing everything now`);
    for (const step of steps) step.kill?.();
    exit(1);
  };
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, onSignal);

  // Started by a wrapper (npm, tsx) that died without passing a signal on: stop too.
  // The timer also keeps the launcher up when it runs nothing itself (SERVICES=none
  // against given servers): it runs until told to stop.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) void stop("parent process gone", 0);
  }, 1_000);

  return {
    onStop(name, stopFn, kill) {
      steps.push({ name, stop: stopFn, kill });
    },
    get stopping() {
      return stopping;
    },
    run(fn) {
      startup = fn();
      startup.catch((err: unknown) => {
        log.error(options.describeError?.(err) ?? String(err));
        void stop("start-up failed", 1);
      });
    },
  };
}

/**
 * Promise.all that lets every promise settle before throwing the first failure, so
 * that nothing started in parallel is left running unregistered.
 */
export async function settleAll<T extends readonly unknown[]>(
  promises: readonly [...{ [K in keyof T]: Promise<T[K]> }],
): Promise<T> {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === "rejected") throw r.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
