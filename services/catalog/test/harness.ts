/**
 * `startCatalog()`: a catalog for one test file — a fresh database on the real
 * PostgreSQL (PG_URL), the committed migrations, the real gRPC server on port 0,
 * the runtime's grpc-js clients, and admin / customer tokens signed by test keys.
 */
import { randomUUID } from "node:crypto";
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { InventoryService } from "@shopmesh/gen/shop/catalog/v1/inventory_pb.js";
import { createTokenVerifier } from "@shopmesh/runtime/auth.js";
import { RpcError } from "@shopmesh/runtime/errors.js";
import { type CallOptions, createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createGrpcServer } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import {
  createTestDatabase,
  createTestKeys,
  TEST_AUDIENCE,
  TEST_ISSUER,
} from "@shopmesh/runtime/testing.js";
import { expect } from "vitest";
import { openCatalogDatabase } from "../src/db/database.js";
import { products } from "../src/db/schema.js";
import { createCatalogService } from "../src/service.js";

export async function startCatalog(options: { lowStockThreshold?: number } = {}) {
  const testDb = await createTestDatabase("catalog");
  // Enough connections that the race tests really run concurrently in Postgres.
  const database = await openCatalogDatabase(testDb.url, { max: 20 });
  const keys = await createTestKeys();
  const verifier = createTokenVerifier({
    issuer: TEST_ISSUER,
    audience: TEST_AUDIENCE,
    fetchJwks: keys.fetchJwks,
  });
  const server = createGrpcServer({
    logger: createLogger("catalog-test", "silent"),
    services: createCatalogService({
      db: database.db,
      verifier,
      lowStockThreshold: options.lowStockThreshold ?? 5,
    }),
  });
  const port = await server.listen(0, "127.0.0.1");
  const address = `127.0.0.1:${port}`;
  const catalog = createGrpcClient(CatalogService, address, { timeoutMs: 15_000 });
  const inventory = createGrpcClient(InventoryService, address, { timeoutMs: 15_000 });
  const bearer = (token: string): CallOptions => ({
    headers: { authorization: `Bearer ${token}` },
  });
  const admin = bearer(await keys.sign(randomUUID(), ["admin"]));
  const customer = bearer(await keys.sign(randomUUID(), ["customer"]));

  /** Inserts a product straight into the database (fast fixtures for inventory tests). */
  const insertProduct = async (values: Partial<typeof products.$inferInsert> = {}) => {
    const [row] = await database.db
      .insert(products)
      .values({
        sku: `T-${randomUUID().slice(0, 8).toUpperCase()}`,
        name: "Test product",
        priceAmount: 1000n,
        currencyCode: "USD",
        stock: 10,
        active: true,
        ...values,
      })
      .returning();
    if (row === undefined) throw new Error("insert returned no row");
    return row;
  };

  return {
    database,
    catalog,
    inventory,
    admin,
    customer,
    insertProduct,
    async stop() {
      catalog.close();
      inventory.close();
      await server.shutdown();
      await database.close();
      await testDb.drop();
    },
  };
}

export type Catalog = Awaited<ReturnType<typeof startCatalog>>;

/** The RpcError a call fails with (the test fails if it succeeds). */
export async function rpcError(call: Promise<unknown>): Promise<RpcError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "expected the call to fail").toBeInstanceOf(RpcError);
  return err as RpcError;
}
