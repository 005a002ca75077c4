/** TCP helpers: is a port free, does it answer, wait until it does. */
import { connect, createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/** True when something accepts a TCP connection on host:port. */
export function canConnect(port: number, host = "127.0.0.1", timeoutMs = 1_000): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ port, host });
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

/** True when nothing listens on `port` (checked by listening on it, on all addresses). */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen({ port, exclusive: true }, () => server.close(() => done(true)));
  });
}

/** A port the kernel picks as free. */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? done(address.port) : fail(new Error("no port")),
      );
    });
  });
}

/** `preferred` when it is free (0: none preferred), else one the kernel picks. */
export async function pickPort(
  preferred: number,
): Promise<{ port: number; preferredBusy: boolean }> {
  if (preferred !== 0 && (await isPortFree(preferred)))
    return { port: preferred, preferredBusy: false };
  return { port: await freePort(), preferredBusy: preferred !== 0 };
}

/**
 * Resolves when host:port accepts connections; rejects after `timeoutMs`, or as soon as
 * `alive()` says the process that should open it has gone.
 */
export async function waitForPort(
  port: number,
  options: { timeoutMs: number; intervalMs?: number; host?: string; alive?: () => boolean },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await canConnect(port, options.host)) return;
    if (options.alive && !options.alive()) throw new Error(`exited before port ${port} opened`);
    if (Date.now() > deadline)
      throw new Error(`port ${port} did not open in ${options.timeoutMs} ms`);
    await sleep(options.intervalMs ?? 50);
  }
}
