/**
 * `every(ms, task, onError)`: a background pass that repeats — a sweeper, a pruner. One
 * pass at a time: when the next is due while one still runs (a slow database, a slow
 * mail server), it is skipped, not doubled. A pass that fails goes to `onError` and the
 * next one tries again. The timer never keeps the process alive; `stop()` ends the
 * repetition and waits for a pass in progress.
 */
export interface Periodic {
  /** Runs a pass now, or returns the one in progress. */
  pass(): Promise<void>;
  stop(): Promise<void>;
}

export function every(
  ms: number,
  task: () => Promise<unknown>,
  onError: (err: unknown) => void,
): Periodic {
  let running: Promise<void> | undefined;
  let stopped = false;
  const pass = () => {
    if (stopped) return Promise.resolve();
    running ??= task()
      .then(() => undefined, onError)
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(pass, ms);
  timer.unref();
  return {
    pass,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
