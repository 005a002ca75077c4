/**
 * `startCatalog()`: a catalog for one test file — a fresh database on the real
 * PostgreSQL (PG_URL), the committed migrations, the real gRPC server on port 0,
 * the runtime's grpc-js clients, and admin / customer tokens signed by test keys.
 */
import { randomUUID } from "node:crypto";
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { InventoryService } from "@shopmesh/gen/shop/catalog/v1/inventory_pb.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import {
  bearer,
  createTestKeys,
  createTestVerifier,
  openTestDatabase,
  startTestServer,
} from "@shopmesh/runtime/testing.js";
import { openCatalogDatabase } from "../src/db/database.js";
import { createCatalogService } from "../src/service.js";
import { insertProduct } from "./fixtures.js";

export async function startCatalog(options: { lowStockThreshold?: number } = {}) {
  // Enough connections that the race tests really run concurrently in Postgres.
  const testDb = await openTestDatabase("catalog", (url) => openCatalogDatabase(url, { max: 20 }));
  const { database } = testDb;
  const keys = await createTestKeys();
  const { server, address } = await startTestServer(
    createCatalogService({
      db: database.db,
      verifier: createTestVerifier(keys),
      lowStockThreshold: options.lowStockThreshold ?? 5,
    }),
    createLogger("catalog-test", "silent"),
  );
  const catalog = createGrpcClient(CatalogService, address, { timeoutMs: 15_000 });
  const inventory = createGrpcClient(InventoryService, address, { timeoutMs: 15_000 });
  const admin = bearer(await keys.sign(randomUUID(), ["admin"]));
  const customer = bearer(await keys.sign(randomUUID(), ["customer"]));

  return {
    /** The test database's URL (its own role). */
    url: testDb.url,
    database,
    catalog,
    inventory,
    admin,
    customer,
    /** Inserts a product straight into the database (fast fixtures for inventory tests). */
    insertProduct: (values?: Parameters<typeof insertProduct>[1]) =>
      insertProduct(database.db, values),
    async stop() {
      catalog.close();
      inventory.close();
      await server.shutdown();
      await testDb.close();
    },
  };
}

export type Catalog = Awaited<ReturnType<typeof startCatalog>>;
