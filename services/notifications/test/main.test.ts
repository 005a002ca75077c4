/**
 * The notifications process as deployed: `node --import tsx services/notifications/src/main.ts`
 * from the repo root. Bad config stops it with one line; good config consumes, serves
 * and stops cleanly.
 *
 * The full run uses a private nats-server (on PATH, as `npm start` needs), not the shared
 * one: the process uses the real durable names, which must not be taken from a running
 * stack or advanced past events it has not seen.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import { KeyService } from "@shopmesh/gen/shop/identity/v1/keys_pb.js";
import {
  NotificationKind,
  NotificationService,
  NotificationStatus,
} from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { OrderConfirmedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { connectBus } from "@shopmesh/runtime/bus.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createGrpcServer, serve } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { createTestDatabase, createTestKeys } from "@shopmesh/runtime/testing.js";
import { afterAll, describe, expect, it } from "vitest";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

function start(env: Record<string, string | undefined>) {
  const merged: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "info", ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  const child = spawn(process.execPath, ["--import", "tsx", "services/notifications/src/main.ts"], {
    cwd: repoRoot,
    env: merged,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, "exit").then(([code]) => code as number | null);
  return { child, exited, out: () => stdout, err: () => stderr };
}

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  for (const c of cleanups.reverse()) await c();
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      srv.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("port")),
      );
    });
  });
}

/** A nats-server with JetStream of our own, gone after the file's tests. */
async function startPrivateNats(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "notifications-nats-"));
  const port = await freePort();
  const nats = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
    stdio: "ignore",
  });
  cleanups.push(async () => {
    nats.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  return `nats://127.0.0.1:${port}`;
}

const SOME_DATABASE = "postgres://x@127.0.0.1:5432/x";

describe("main", () => {
  it("exits 1 with one stderr line naming NATS_URL when it is not set", async () => {
    const p = start({ DATABASE_URL: SOME_DATABASE, NATS_URL: undefined });
    expect(await p.exited).toBe(1);
    const lines = p.err().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^notifications: config error: NATS_URL /);
  });

  it("exits 1 naming SMTP_URL when it is not an smtp:// or smtps:// URL", async () => {
    const p = start({
      DATABASE_URL: SOME_DATABASE,
      NATS_URL: "nats://127.0.0.1:4222",
      SMTP_URL: "http://mail.example.com",
    });
    expect(await p.exited).toBe(1);
    expect(p.err().trim()).toMatch(/^notifications: config error: SMTP_URL .*$/);
  });

  it("consumes events, serves the caller's notifications, and stops cleanly on SIGTERM", async () => {
    const natsUrl = await startPrivateNats();
    const db = await createTestDatabase("notifications_main");
    cleanups.push(() => db.drop());
    // identity's KeyService, serving the test keys' JWKS.
    const keys = await createTestKeys();
    const identity = createGrpcServer({
      logger: createLogger("identity-stub", "silent"),
      services: [
        serve(KeyService, {
          getJwks: async () => ({
            keys: (await keys.fetchJwks()).keys.map((k) => ({
              kty: k.kty,
              crv: k.crv ?? "",
              x: k.x ?? "",
              kid: k.kid ?? "",
              alg: k.alg ?? "",
              use: k.use ?? "",
            })),
          }),
        }),
      ],
    });
    const identityPort = await identity.listen(0, "127.0.0.1");
    cleanups.push(() => identity.shutdown());

    const p = start({
      DATABASE_URL: db.url,
      NATS_URL: natsUrl,
      PORT: "0",
      IDENTITY_ADDR: `127.0.0.1:${identityPort}`,
      SMTP_URL: undefined,
    });
    const readyLine = () =>
      p
        .out()
        .split("\n")
        .find((l) => l.includes('"msg":"ready"'));
    await expect.poll(readyLine, { timeout: 30_000, interval: 100 }).toBeDefined();
    const ready = JSON.parse(readyLine() ?? "{}") as { port: number; delivery: string };
    expect(ready.port).toBeGreaterThan(0);
    expect(ready.delivery).toBe("local");

    // An event as identity's outbox relay publishes it.
    const bus = await connectBus({
      url: natsUrl,
      name: "main-test",
      logger: createLogger("t", "silent"),
    });
    cleanups.push(() => bus.close());
    const userId = randomUUID();
    const eventId = randomUUID();
    const event = create(UserRegisteredSchema, {
      eventId,
      userId,
      email: "grace@example.com",
      displayName: "Grace",
    });
    await bus.js.publish("shop.identity.user_registered", toBinary(UserRegisteredSchema, event), {
      msgID: eventId,
    });

    const client = createGrpcClient(NotificationService, `127.0.0.1:${ready.port}`);
    cleanups.push(() => client.close());
    const auth = { headers: { authorization: `Bearer ${await keys.sign(userId, ["customer"])}` } };
    await expect
      .poll(
        async () =>
          (await client.listNotifications({}, auth)).notifications.map((x) => [x.kind, x.status]),
        { timeout: 20_000 },
      )
      .toEqual([[NotificationKind.WELCOME, NotificationStatus.SENT]]);
    expect(p.out()).toContain("delivered locally");
    expect(p.out()).toContain("g***@example.com");
    expect(p.out()).not.toContain("grace@example.com");

    // A live Watch stream (proved by receiving an event published after it opened)
    // does not hold shutdown up: it ends, cleanly, with the server.
    const received: string[] = [];
    const watching = (async () => {
      try {
        for await (const msg of client.watchNotifications({}, auth)) {
          received.push(msg.notification?.orderId ?? "");
        }
        return "ended";
      } catch (err) {
        return err;
      }
    })();
    // No first message until something happens, so keep confirming orders until one shows.
    await expect
      .poll(
        async () => {
          const orderId = randomUUID();
          const eventId = randomUUID();
          const confirmed = create(OrderConfirmedSchema, { eventId, orderId, userId });
          await bus.js.publish(
            "shop.orders.order_confirmed",
            toBinary(OrderConfirmedSchema, confirmed),
            { msgID: eventId },
          );
          return received.length;
        },
        { timeout: 20_000, interval: 500 },
      )
      .toBeGreaterThan(0);
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    expect(await watching).toBe("ended");
    expect(p.out()).toContain('"msg":"stopped"');
  });
});
