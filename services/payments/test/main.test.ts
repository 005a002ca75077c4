/**
 * The payments process as deployed: `node --import tsx services/payments/src/main.ts`
 * from the repo root. Bad config stops it with one line; good config migrates, consumes
 * OrderPlaced, publishes PaymentSucceeded through the outbox relay, serves, and stops
 * cleanly on SIGTERM.
 */
import { randomUUID } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { OrderPlacedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { PaymentSucceededSchema } from "@shopmesh/gen/shop/payments/v1/events_pb.js";
import { PaymentService } from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { connectBus, STREAM } from "@shopmesh/runtime/bus.js";
import { Code } from "@shopmesh/runtime/errors.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import {
  createTestDatabase,
  killSpawned,
  publishEvent,
  rpcError,
  spawnService,
  startPrivateNats,
} from "@shopmesh/runtime/testing.js";
import { afterAll, describe, expect, it } from "vitest";
import { durableNames, SUBJECTS } from "../src/events.js";
import { logger, NATS_URL } from "./harness.js";

const start = (env: Record<string, string | undefined>) =>
  spawnService("services/payments/src/main.ts", env);

afterAll(killSpawned);

// Each test starts a process through tsx, which takes seconds on a loaded machine.
describe("main", { timeout: 90_000 }, () => {
  it("exits 1 with one stderr line naming NATS_URL when it is not set", async () => {
    const p = start({ DATABASE_URL: "postgres://x@127.0.0.1/x", NATS_URL: undefined });
    expect(await p.exited).toBe(1);
    const lines = p.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^payments: config error: NATS_URL /);
  });

  it("exits 1 naming PROVIDER_LATENCY_MS when it is not a number", async () => {
    const p = start({
      DATABASE_URL: "postgres://x@127.0.0.1/x",
      NATS_URL,
      PROVIDER_LATENCY_MS: "slow",
    });
    expect(await p.exited).toBe(1);
    expect(p.stderr().trim()).toMatch(/^payments: config error: PROVIDER_LATENCY_MS [^\n]*$/);
  });

  it("charges an order end to end, serves, and stops cleanly on SIGTERM", async () => {
    // A NATS of its own: the process runs with its production consumer names and relays
    // what it charges, and neither may touch the stream other test runs share.
    const nats = await startPrivateNats();
    const db = await createTestDatabase("payments_main");
    const bus = await connectBus({ url: nats.url, name: "payments-main-test", logger });
    try {
      const p = start({ DATABASE_URL: db.url, NATS_URL: nats.url, PORT: "0" });
      const { port } = await p.ready(20_000);
      expect(port).toBeGreaterThan(0);
      const consumers = [];
      for await (const c of bus.jsm.consumers.list(STREAM)) consumers.push(c.name);
      expect(consumers.sort()).toEqual(Object.values(durableNames()).sort());

      const orderId = randomUUID();
      const placed = create(OrderPlacedSchema, {
        eventId: randomUUID(),
        orderId,
        userId: randomUUID(),
        total: { currencyCode: "USD", amount: 1_234n },
        paymentToken: "tok_visa",
      });
      await publishEvent(bus, SUBJECTS.orderPlaced, OrderPlacedSchema, placed);

      // The outbox relay publishes PaymentSucceeded, with the event id as Nats-Msg-Id.
      const lastSucceeded = () =>
        bus.jsm.streams
          .getMessage(STREAM, { last_by_subj: SUBJECTS.paymentSucceeded })
          .catch(() => null);
      await expect.poll(lastSucceeded, { timeout: 15_000, interval: 100 }).not.toBeNull();
      const msg = await lastSucceeded();
      const succeeded = fromBinary(PaymentSucceededSchema, msg?.data ?? new Uint8Array());
      expect(succeeded).toMatchObject({ orderId, amount: { currencyCode: "USD", amount: 1_234n } });
      expect(msg?.header.get("Nats-Msg-Id")).toBe(succeeded.eventId);

      const client = createGrpcClient(PaymentService, `127.0.0.1:${port}`);
      const err = await rpcError(client.getPayment({ paymentId: succeeded.paymentId }));
      expect(err.code).toBe(Code.UNAUTHENTICATED);
      client.close();

      // The payment token never reaches a log line.
      expect(p.stdout() + p.stderr()).not.toContain("tok_visa");
      expect(await p.stop()).toBe(0);
      expect(p.stdout()).toContain('"msg":"stopped"');
    } finally {
      await bus.close();
      await db.drop();
      await nats.stop();
    }
  });
});
