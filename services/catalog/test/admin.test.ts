/**
 * The admin port of a service process as deployed (the catalog stands for all six:
 * they share the wiring in the runtime; ADMIN_PORT's validation is tested in the
 * runtime's metrics.test.ts): /metrics is valid Prometheus text labelled with the
 * service, its RPC counters move with traffic, and the process still stops cleanly on
 * SIGTERM with the admin server open.
 */
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { freePort } from "@shopmesh/runtime/embedded-postgres.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { scrapeMetrics } from "@shopmesh/runtime/metrics-testing.js";
import { createTestDatabase, killSpawned, spawnService } from "@shopmesh/runtime/testing.js";
import { afterAll, describe, expect, it } from "vitest";

const start = (env: Record<string, string | undefined>) =>
  spawnService("services/catalog/src/main.ts", env);

afterAll(killSpawned);

describe("admin port", { timeout: 90_000 }, () => {
  it("serves /metrics, /healthz and /readyz; RPC counters move after calls", async () => {
    const db = await createTestDatabase("catalog_admin");
    try {
      const adminPort = await freePort();
      const p = start({
        DATABASE_URL: db.url,
        PORT: "0",
        ADMIN_PORT: String(adminPort),
        DATABASE_POOL_MAX: "4",
      });
      const { port } = await p.ready(30_000);
      const admin = `http://127.0.0.1:${adminPort}`;
      expect((await fetch(`${admin}/healthz`)).status).toBe(200);
      expect((await fetch(`${admin}/readyz`)).status).toBe(200);

      const method = "/shop.catalog.v1.CatalogService/ListProducts";
      const before = await scrapeMetrics(`${admin}/metrics`);
      const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
      await client.listProducts({ pageSize: 5 });
      await client.listProducts({ pageSize: 5 });
      client.close();
      const after = await scrapeMetrics(`${admin}/metrics`);
      const handled = { method, code: "OK", service: "catalog" };
      expect(
        after.sum("shopmesh_grpc_server_handled_total", handled) -
          before.sum("shopmesh_grpc_server_handled_total", handled),
      ).toBe(2);
      expect(after.sum("shopmesh_db_pool_max", { service: "catalog" })).toBe(4);
      expect(after.sum("shopmesh_outbox_backlog", { service: "catalog" })).toBe(0);
      expect(after.families.get("nodejs_eventloop_lag_p99_seconds")?.type).toBe("gauge");

      expect(await p.stop()).toBe(0);
      await expect(fetch(`${admin}/healthz`)).rejects.toThrow();
    } finally {
      await db.drop();
    }
  });
});
