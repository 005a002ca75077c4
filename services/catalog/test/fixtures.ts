/** Catalog test fixtures, shared with the tests of services that call the catalog. */
import { randomUUID } from "node:crypto";
import type { CatalogDb } from "../src/db/database.js";
import { products } from "../src/db/schema.js";

/** Inserts a product straight into the database (fast fixtures, no RPC). */
export async function insertProduct(
  db: CatalogDb,
  values: Partial<typeof products.$inferInsert> = {},
) {
  const [row] = await db
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
}
