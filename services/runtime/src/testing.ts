/**
 * Test support shared by every service's tests: a fresh database per test file on the
 * real PostgreSQL (PG_URL, set by the global setup), and access tokens signed by a
 * test key, for services tested without identity running.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { exportJWK, generateKeyPair, type JSONWebKeySet, SignJWT } from "jose";
import { createTokenVerifier, TOKEN_ALG, type TokenVerifier } from "./auth.js";
import type { Bus } from "./bus.js";
import { dropServiceDatabase, ensureServiceDatabase } from "./db.js";
import { freePort } from "./embedded-postgres.js";
import { RpcError } from "./errors.js";
import type { CallOptions } from "./grpc-client.js";
import { createGrpcServer, type GrpcServer, type ServiceRegistration } from "./grpc-server.js";
import { createLogger, type Logger } from "./logger.js";

export async function createTestDatabase(
  prefix: string,
): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = process.env["PG_URL"];
  if (!adminUrl) throw new Error("PG_URL is not set: run tests through vitest (global setup)");
  const name = `${prefix}_${randomBytes(4).toString("hex")}`;
  const url = await ensureServiceDatabase(adminUrl, name, randomBytes(12).toString("hex"));
  return { url, drop: () => dropServiceDatabase(adminUrl, name) };
}

/**
 * A fresh test database opened by the service's own `open` (its schema and committed
 * migrations); `close()` closes it and drops the database.
 */
export async function openTestDatabase<D extends { close(): Promise<void> }>(
  prefix: string,
  open: (url: string) => Promise<D>,
): Promise<{ url: string; database: D; close(): Promise<void> }> {
  const testDb = await createTestDatabase(prefix);
  const database = await open(testDb.url);
  return {
    url: testDb.url,
    database,
    async close() {
      await database.close();
      await testDb.drop();
    },
  };
}

/**
 * A TCP relay to the PostgreSQL server of `target` that counts what the client sends:
 * writes (as the segments arrive), how tests tell how many round trips something costs,
 * and COMMITs, how many transactions. `url` is `target` through the relay.
 */
export async function startCountingRelay(target: string): Promise<{
  url: string;
  /** Writes since the last call. */
  take(): number;
  /** COMMITs sent since the last call. */
  commits(): number;
  close(): Promise<void>;
}> {
  const to = new URL(target);
  let writes = 0;
  let commits = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(to.port || 5432), to.hostname);
    let tail = "";
    client.on("data", (d: Buffer) => {
      writes++;
      // The statement text travels as is; keep a tail so a word split across writes counts.
      const text = tail + d.toString("latin1");
      commits += text.match(/\bcommit\b/gi)?.length ?? 0;
      tail = text.slice(-5);
      upstream.write(d);
    });
    upstream.on("data", (d) => client.write(d));
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const via = new URL(to);
  via.hostname = "127.0.0.1";
  via.port = String((server.address() as net.AddressInfo).port);
  return {
    url: via.toString(),
    take: () => {
      const n = writes;
      writes = 0;
      return n;
    },
    commits: () => {
      const n = commits;
      commits = 0;
      return n;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
      }),
  };
}

/** A gRPC server of `services` on a free port of 127.0.0.1 (health and reflection too). */
export async function startTestServer(
  services: ServiceRegistration[],
  logger: Logger = createLogger("test", "silent"),
): Promise<{ server: GrpcServer; port: number; address: string }> {
  const server = createGrpcServer({ logger, services });
  const port = await server.listen(0, "127.0.0.1");
  return { server, port, address: `127.0.0.1:${port}` };
}

/** Call options carrying `Authorization: Bearer <token>`. */
export function bearer(token: string): CallOptions {
  return { headers: { authorization: `Bearer ${token}` } };
}

/** The RpcError a call fails with; throws (failing the test) if it succeeds or fails otherwise. */
export async function rpcError(call: Promise<unknown>): Promise<RpcError> {
  const err = await call.then(
    () => new Error("expected the call to fail, but it succeeded"),
    (e: unknown) => e,
  );
  if (!(err instanceof RpcError)) throw err;
  return err;
}

/** A random suffix for this run's durable consumer names, e.g. "-test-1a2b3c4d". */
export function durableSuffix(prefix = "-test-"): string {
  return `${prefix}${randomBytes(4).toString("hex")}`;
}

/**
 * Publishes `message` on the real JetStream the way a producer's outbox relay does:
 * Nats-Msg-Id = its event id (so a repeat is dropped as a duplicate), plus `headers`.
 */
export function publishEvent<D extends DescMessage>(
  bus: Bus,
  subject: string,
  schema: D,
  message: MessageShape<D>,
  headers: Record<string, string> = {},
) {
  // Every event message of shop.* has event_id.
  const eventId = (message as { eventId?: unknown }).eventId;
  if (typeof eventId !== "string" || eventId === "") throw new Error("event without eventId");
  const h = natsHeaders();
  for (const [k, v] of Object.entries(headers)) h.set(k, v);
  return bus.js.publish(subject, toBinary(schema, message), { msgID: eventId, headers: h });
}

export const TEST_ISSUER = "shopmesh-identity";
export const TEST_AUDIENCE = "shopmesh";

export interface TestKeys {
  fetchJwks(): Promise<JSONWebKeySet>;
  /** A valid access token for `sub` with `roles`. */
  sign(sub: string, roles: string[], email?: string): Promise<string>;
}

export async function createTestKeys(): Promise<TestKeys> {
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_ALG, { crv: "Ed25519" });
  const kid = randomUUID();
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: TOKEN_ALG, use: "sig" };
  return {
    fetchJwks: async () => ({ keys: [jwk] }),
    sign: (sub, roles, email = `${sub}@example.com`) =>
      new SignJWT({ roles, email })
        .setProtectedHeader({ alg: TOKEN_ALG, kid })
        .setIssuer(TEST_ISSUER)
        .setAudience(TEST_AUDIENCE)
        .setSubject(sub)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime("15m")
        .sign(privateKey),
  };
}

/** A token verifier trusting `keys`, with the issuer and audience their tokens carry. */
export function createTestVerifier(keys: Pick<TestKeys, "fetchJwks">): TokenVerifier {
  return createTokenVerifier({
    issuer: TEST_ISSUER,
    audience: TEST_AUDIENCE,
    fetchJwks: keys.fetchJwks,
  });
}

const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const spawned = new Set<ChildProcess>();

/** A service's main.ts running as a child process, as deployed. */
export interface SpawnedService {
  child: ChildProcess;
  /** Its exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** Everything it wrote to stdout so far. */
  stdout(): string;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Its JSON "ready" log line, parsed; rejects if it exits or `timeoutMs` passes first. */
  ready(timeoutMs?: number): Promise<{ port: number } & Record<string, unknown>>;
  /** Sends `signal` (SIGTERM) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * `node --import tsx <mainPath>` from the repo root, at LOG_LEVEL info, with `env` over
 * `options.baseEnv` (this process's environment unless given); an `undefined` value
 * removes the variable. `killSpawned()` (in afterAll) ends whatever is still running.
 */
export function spawnService(
  mainPath: string,
  env: Record<string, string | undefined>,
  options: { baseEnv?: NodeJS.ProcessEnv } = {},
): SpawnedService {
  const merged: NodeJS.ProcessEnv = {
    ...(options.baseEnv ?? process.env),
    LOG_LEVEL: "info",
    ...env,
  };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  const child = spawn(process.execPath, ["--import", "tsx", mainPath], {
    cwd: REPO_ROOT,
    env: merged,
    stdio: ["ignore", "pipe", "pipe"],
  });
  spawned.add(child);
  let stdout = "";
  let stderr = "";
  const changed = new Set<() => void>();
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
    for (const check of changed) check();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, "exit").then(([code]) => code as number | null);
  // After "exit", stdout may still hold the last lines; "close" comes after them.
  const closed = once(child, "close").then(([code]) => code as number | null);

  const readyLine = () => {
    for (const line of stdout.split("\n")) {
      if (!line.includes('"msg":"ready"')) continue;
      try {
        const entry = JSON.parse(line) as { msg?: unknown; port?: unknown };
        if (entry.msg === "ready" && typeof entry.port === "number") {
          return entry as { port: number } & Record<string, unknown>;
        }
      } catch {
        // Not a whole JSON line (yet).
      }
    }
    return undefined;
  };

  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    ready(timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          changed.delete(check);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${mainPath}: no ready line in ${timeoutMs} ms; stderr: ${stderr}`));
        }, timeoutMs);
        const check = () => {
          const entry = readyLine();
          if (entry === undefined) return;
          done();
          resolve(entry);
        };
        changed.add(check);
        void closed.then((code) => {
          if (readyLine() !== undefined) return;
          done();
          reject(new Error(`${mainPath} exited ${code} before ready: ${stderr}`));
        });
        check();
      });
    },
    stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** SIGKILLs every process spawnService or startPrivateNats started that still runs. */
export function killSpawned(): void {
  for (const child of spawned) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  spawned.clear();
}

/**
 * A throwaway nats-server with JetStream on a free port (nats-server must be on PATH),
 * for a process that uses its production durable names and must not touch the stream
 * other test runs share. No wait for it here: connectBus waits for the first connection.
 */
export async function startPrivateNats(): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "private-nats-"));
  const port = await freePort();
  const server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
    stdio: "ignore",
  });
  spawned.add(server);
  return {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      if (server.exitCode === null && server.signalCode === null) {
        server.kill("SIGTERM");
        await once(server, "exit");
      }
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    },
  };
}
