/** The demo seed: at least 12 products, one stocked deep, inserted once however often it runs. */
import { count } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { products } from "../src/db/schema.js";
import { DEMO_PRODUCTS, seedDemoCatalog } from "../src/seed.js";
import { type Catalog, startCatalog } from "./harness.js";

let c: Catalog;
beforeAll(async () => {
  c = await startCatalog();
});
afterAll(async () => {
  await c?.stop();
});

describe("demo catalog seed", () => {
  it("inserts the demo products once, however often it runs", async () => {
    const productCount = async () =>
      (await c.database.db.select({ n: count() }).from(products))[0]?.n;

    expect(await seedDemoCatalog(c.database.db)).toBe(DEMO_PRODUCTS.length);
    expect(await productCount()).toBe(DEMO_PRODUCTS.length);
    expect(DEMO_PRODUCTS.length).toBeGreaterThanOrEqual(12);

    // Concurrent starts (replicas) as well as a restart.
    const again = await Promise.all([
      seedDemoCatalog(c.database.db),
      seedDemoCatalog(c.database.db),
    ]);
    expect(again).toEqual([0, 0]);
    expect(await productCount()).toBe(DEMO_PRODUCTS.length);

    const rows = await c.database.db.select().from(products);
    expect(rows.some((r) => r.stock >= 1000)).toBe(true);
    expect(rows.every((r) => r.currencyCode === "USD" && r.priceAmount > 0n)).toBe(true);
  });

  it("leaves a product an admin changed as it is", async () => {
    const { products: page } = await c.catalog.listProducts({ query: "MUG-STONEWARE-12" });
    const mug = page[0];
    if (mug === undefined) throw new Error("seeded mug missing");
    await c.catalog.updateProduct(
      { product: { id: mug.id, name: "Renamed Mug" }, updateMask: { paths: ["name"] } },
      c.admin,
    );
    await seedDemoCatalog(c.database.db);
    expect((await c.catalog.getProduct({ productId: mug.id })).product?.name).toBe("Renamed Mug");
  });

  it("products are valid against the contract's sku rule", () => {
    for (const p of DEMO_PRODUCTS) expect(p.sku).toMatch(/^[A-Z0-9][A-Z0-9-]{1,39}$/);
    expect(new Set(DEMO_PRODUCTS.map((p) => p.sku)).size).toBe(DEMO_PRODUCTS.length);
  });
});
