/**
 * The admin HTTP port of a service (ADMIN_PORT, 9090 in the chart): Prometheus
 * `/metrics`, `/healthz` (the process answers) and `/readyz` (it can take traffic:
 * 503 while starting, and from the moment shutdown starts). Plain node:http, apart
 * from the service's own port, so a scrape never queues behind user traffic.
 */
import * as http from "node:http";
import type { Field } from "./config.js";
import { env } from "./config.js";
import { type Health, ServingStatus } from "./health.js";
import type { Logger } from "./logger.js";
import { initMetrics, registry } from "./metrics.js";

/** ADMIN_PORT: unset or empty, no admin server; otherwise a port (0 picks a free one). */
export const adminEnv = {
  ADMIN_PORT: {
    read: (raw) => (raw === undefined || raw === "" ? undefined : env.port().read(raw)),
  } as Field<number | undefined>,
};

export interface AdminServerOptions {
  /** undefined: no server (the returned object does nothing). */
  port: number | undefined;
  /** Default 0.0.0.0: Prometheus and the kubelet reach it from outside the pod. */
  host?: string;
  /** The `service` label of every series. */
  service: string;
  logger: Logger;
}

export interface AdminServer {
  /** The bound port, or undefined when no admin server runs. */
  readonly port: number | undefined;
  /**
   * From now on /readyz asks `check` (until then it answers 503 "starting"); a check
   * that throws, or takes longer than 1.5 s (probes time out at 2 s), is "not ready".
   */
  readyWhen(check: () => boolean | Promise<boolean>): void;
  /** /readyz answers 503 from now on: shutdown has started. */
  drain(): void;
  close(): Promise<void>;
}

/** Starts the admin server on `port` and the process metrics; with no port, nothing. */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { logger } = options;
  let check: (() => boolean | Promise<boolean>) | undefined;
  let draining = false;
  if (options.port === undefined) {
    return {
      port: undefined,
      readyWhen: () => undefined,
      drain: () => undefined,
      close: async () => undefined,
    };
  }
  initMetrics(options.service);

  const readiness = async (): Promise<{ ready: boolean; status: string }> => {
    if (draining) return { ready: false, status: "draining" };
    if (check === undefined) return { ready: false, status: "starting" };
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), 1_500);
      });
      const ok = await Promise.race([Promise.resolve(check()), timeout]);
      // Shutdown may have started while the check ran.
      if (draining) return { ready: false, status: "draining" };
      return ok ? { ready: true, status: "ready" } : { ready: false, status: "not ready" };
    } catch {
      return { ready: false, status: "not ready" };
    } finally {
      clearTimeout(timer);
    }
  };

  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return send(res, 405, "text/plain; charset=utf-8", "method not allowed\n");
    }
    switch (path) {
      case "/metrics":
        registry.metrics().then(
          (text) => send(res, 200, registry.contentType, text),
          (err: unknown) => {
            logger.error({ err }, "metrics collection failed");
            send(res, 500, "text/plain; charset=utf-8", "metrics collection failed\n");
          },
        );
        return;
      case "/healthz":
        return send(res, 200, "text/plain; charset=utf-8", "ok\n");
      case "/readyz":
        void readiness().then((r) =>
          send(res, r.ready ? 200 : 503, "text/plain; charset=utf-8", `${r.status}\n`),
        );
        return;
      default:
        return send(
          res,
          404,
          "text/plain; charset=utf-8",
          "not found: /metrics, /healthz, /readyz\n",
        );
    }
  });
  // Scrapes and probes are short; never keep sockets that would hold shutdown up.
  server.keepAliveTimeout = 5_000;
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host ?? "0.0.0.0", () => {
      server.off("error", reject);
      const addr = server.address();
      resolve(typeof addr === "object" && addr ? addr.port : (options.port as number));
    });
  });
  server.on("error", (err) => logger.error({ err }, "admin server error"));
  logger.info({ admin_port: port }, "admin server listening: /metrics /healthz /readyz");

  return {
    port,
    readyWhen(c) {
      check = c;
    },
    drain() {
      draining = true;
    },
    async close() {
      draining = true;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** A readiness check for `readyWhen`: the server as a whole ("") is SERVING. */
export function whenServing(health: Pick<Health, "get">): () => boolean {
  return () => health.get("") === ServingStatus.SERVING;
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string) {
  res.statusCode = status;
  res.setHeader("content-type", contentType);
  res.setHeader("content-length", Buffer.byteLength(body));
  res.setHeader("cache-control", "no-store");
  res.end(res.req.method === "HEAD" ? undefined : body);
}
