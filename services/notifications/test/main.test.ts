/**
 * The notifications process as deployed: `node --import tsx services/notifications/src/main.ts`
 * from the repo root. Bad config stops it with one line; good config consumes, serves
 * and stops cleanly.
 *
 * The full run uses a private nats-server (on PATH, as `npm start` needs), not the shared
 * one: the process uses the real durable names, which must not be taken from a running
 * stack or advanced past events it has not seen.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import { KeyService } from "@shopmesh/gen/shop/identity/v1/keys_pb.js";
import {
  NotificationKind,
  NotificationService,
  NotificationStatus,
} from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { OrderConfirmedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { jwksResponse } from "@shopmesh/runtime/auth.js";
import { connectBus } from "@shopmesh/runtime/bus.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createGrpcServer, serve } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import {
  createTestDatabase,
  createTestKeys,
  killSpawned,
  publishEvent,
  spawnService,
  startPrivateNats,
} from "@shopmesh/runtime/testing.js";
import { afterAll, describe, expect, it } from "vitest";

const cleanups: (() => Promise<void> | void)[] = [];

const start = (env: Record<string, string | undefined>) =>
  spawnService("services/notifications/src/main.ts", env);

afterAll(async () => {
  killSpawned();
  for (const c of cleanups.reverse()) await c();
});

const SOME_DATABASE = "postgres://x@127.0.0.1:5432/x";

describe("main", () => {
  it("exits 1 with one stderr line naming NATS_URL when it is not set", async () => {
    const p = start({ DATABASE_URL: SOME_DATABASE, NATS_URL: undefined });
    expect(await p.exited).toBe(1);
    const lines = p.stderr().trim().split("\n");
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
    expect(p.stderr().trim()).toMatch(/^notifications: config error: SMTP_URL .*$/);
  });

  it("consumes events, serves the caller's notifications, and stops cleanly on SIGTERM", async () => {
    const nats = await startPrivateNats();
    cleanups.push(() => nats.stop());
    const natsUrl = nats.url;
    const db = await createTestDatabase("notifications_main");
    cleanups.push(() => db.drop());
    // identity's KeyService, serving the test keys' JWKS.
    const keys = await createTestKeys();
    const identity = createGrpcServer({
      logger: createLogger("identity-stub", "silent"),
      services: [
        serve(KeyService, {
          getJwks: async () => jwksResponse(await keys.fetchJwks()),
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
    const ready = await p.ready(30_000);
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
    const event = create(UserRegisteredSchema, {
      eventId: randomUUID(),
      userId,
      email: "grace@example.com",
      displayName: "Grace",
    });
    await publishEvent(bus, "shop.identity.user_registered", UserRegisteredSchema, event);

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
    expect(p.stdout()).toContain("delivered locally");
    expect(p.stdout()).toContain("g***@example.com");
    expect(p.stdout()).not.toContain("grace@example.com");

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
          const confirmed = create(OrderConfirmedSchema, {
            eventId: randomUUID(),
            orderId: randomUUID(),
            userId,
          });
          await publishEvent(bus, "shop.orders.order_confirmed", OrderConfirmedSchema, confirmed);
          return received.length;
        },
        { timeout: 20_000, interval: 500 },
      )
      .toBeGreaterThan(0);
    expect(await p.stop()).toBe(0);
    expect(await watching).toBe("ended");
    expect(p.stdout()).toContain('"msg":"stopped"');
  });
});
