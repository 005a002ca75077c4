/**
 * Graceful shutdown on SIGTERM/SIGINT: run the steps in order (server drain first,
 * pools last), each bounded, then exit. A second signal exits at once.
 */
import type { Logger } from "./logger.js";
import { shutdownTelemetry } from "./telemetry.js";

export interface ShutdownStep {
  name: string;
  run(): Promise<void>;
}

export function onShutdown(logger: Logger, steps: ShutdownStep[], boundMs = 15_000): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    const hardStop = setTimeout(() => {
      logger.error({ boundMs }, "shutdown bound exceeded");
      process.exit(1);
    }, boundMs);
    hardStop.unref();
    let code = 0;
    for (const step of steps) {
      try {
        await step.run();
      } catch (err) {
        code = 1;
        logger.error({ err, step: step.name }, "shutdown step failed");
      }
    }
    // Spans still buffered (the last requests' and the shutdown's) go out before exit.
    await shutdownTelemetry();
    logger.info("stopped");
    process.exit(code);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}
