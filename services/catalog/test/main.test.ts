/**
 * The catalog process as deployed: `node --import tsx services/catalog/src/main.ts`
 * from the repo root. Bad config stops it with one line; good config serves.
 */
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createTestDatabase, killSpawned, spawnService } from "@shopmesh/runtime/testing.js";
import { afterAll, describe, expect, it } from "vitest";

const start = (env: Record<string, string | undefined>) =>
  spawnService("services/catalog/src/main.ts", env);

afterAll(killSpawned);

describe("main", () => {
  it("exits 1 with one stderr line naming DATABASE_URL when it is not set", async () => {
    const p = start({ DATABASE_URL: undefined });
    expect(await p.exited).toBe(1);
    const lines = p.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("DATABASE_URL");
  });

  it("exits 1 naming SEED_DEMO_CATALOG when it is not true or false", async () => {
    const p = start({ DATABASE_URL: "postgres://x@127.0.0.1/x", SEED_DEMO_CATALOG: "yes" });
    expect(await p.exited).toBe(1);
    expect(p.stderr().trim()).toMatch(/^catalog: config error: SEED_DEMO_CATALOG .*$/);
  });

  it("migrates, seeds, serves and stops cleanly on SIGTERM", async () => {
    const db = await createTestDatabase("catalog_main");
    try {
      const p = start({ DATABASE_URL: db.url, PORT: "0", SEED_DEMO_CATALOG: undefined });
      const { port } = await p.ready(20_000);
      expect(port).toBeGreaterThan(0);

      const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
      const res = await client.listProducts({ pageSize: 100 });
      expect(res.products.length).toBeGreaterThanOrEqual(12);
      client.close();

      expect(await p.stop()).toBe(0);
    } finally {
      await db.drop();
    }
  });
});
