/**
 * The orders process as deployed: `node --import tsx services/orders/src/main.ts`
 * from the repo root. Bad config stops it with one line; good config migrates,
 * connects to NATS, serves, and stops cleanly on SIGTERM.
 */
import { randomBytes } from "node:crypto";
import { OrderService } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { connectBus, STREAM } from "@shopmesh/runtime/bus.js";
import { Code } from "@shopmesh/runtime/errors.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import {
  createTestDatabase,
  killSpawned,
  rpcError,
  spawnService,
} from "@shopmesh/runtime/testing.js";
import { afterAll, describe, expect, it } from "vitest";

const NATS_URL = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";

const start = (env: Record<string, string | undefined>) =>
  spawnService("services/orders/src/main.ts", env);

afterAll(killSpawned);

describe("main", () => {
  it("exits 1 with one stderr line naming DATABASE_URL when it is not set", async () => {
    const p = start({ DATABASE_URL: undefined, NATS_URL });
    expect(await p.exited).toBe(1);
    const lines = p.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^orders: config error: DATABASE_URL is required but not set$/);
  });

  it("names NATS_URL when it is not set, and does not echo a bad DATABASE_URL", async () => {
    const noNats = start({ DATABASE_URL: "postgres://x@127.0.0.1/x", NATS_URL: undefined });
    const bad = start({ DATABASE_URL: "postgres//user:s3cret@db", NATS_URL });
    expect(await noNats.exited).toBe(1);
    expect(noNats.stderr().trim()).toBe("orders: config error: NATS_URL is required but not set");
    expect(await bad.exited).toBe(1);
    expect(bad.stderr().trim()).toBe("orders: config error: DATABASE_URL must be a URL");
  });

  it("migrates, serves and stops cleanly on SIGTERM", async () => {
    const db = await createTestDatabase("orders_main");
    const prefix = `orders-main-${randomBytes(4).toString("hex")}`;
    try {
      const p = start({ DATABASE_URL: db.url, NATS_URL, PORT: "0", NATS_DURABLE_PREFIX: prefix });
      const { port } = await p.ready(20_000);
      expect(port).toBeGreaterThan(0);

      // It answers (and refuses an anonymous caller, as it should).
      const client = createGrpcClient(OrderService, `127.0.0.1:${port}`);
      const err = await rpcError(client.listOrders({}));
      expect(err.code).toBe(Code.UNAUTHENTICATED);
      client.close();

      expect(await p.stop()).toBe(0);
    } finally {
      await db.drop();
      // The durable consumers main.ts created under this run's prefix.
      const bus = await connectBus({
        url: NATS_URL,
        name: "orders-main-test",
        logger: createLogger("orders-main-test", "silent"),
      });
      for (const event of ["payment_succeeded", "payment_failed", "payment_refunded"]) {
        await bus.jsm.consumers.delete(STREAM, `${prefix}-${event}`).catch(() => false);
      }
      await bus.close();
    }
  });
});
