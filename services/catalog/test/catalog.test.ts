/**
 * CatalogService over real gRPC against a real database: public browsing (paging,
 * search, page tokens), and admin management with its auth and error codes.
 */

import { randomUUID } from "node:crypto";
import type { Product } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { Code } from "@shopmesh/runtime/errors.js";
import { rpcError } from "@shopmesh/runtime/testing.js";
import { and, asc, eq, like } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { outbox, products } from "../src/db/schema.js";
import { seedDemoCatalog } from "../src/seed.js";
import { type Catalog, startCatalog } from "./harness.js";

let c: Catalog;
beforeAll(async () => {
  c = await startCatalog({ lowStockThreshold: 5 });
  await seedDemoCatalog(c.database.db);
});
afterAll(async () => {
  await c?.stop();
});

/** Every page of a listing, following next_page_token. */
async function listAll(
  req: { pageSize?: number; query?: string; includeInactive?: boolean },
  opts = {},
) {
  const all: Product[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const res = await c.catalog.listProducts({ ...req, pageToken }, opts);
    all.push(...res.products);
    if (req.pageSize) expect(res.products.length).toBeLessThanOrEqual(req.pageSize);
    pageToken = res.nextPageToken;
    pages++;
    expect(pages).toBeLessThan(100);
  } while (pageToken !== "");
  return { all, pages };
}

describe("ListProducts", () => {
  it("pages through every active product in (name, id) order, no duplicates, no gaps", async () => {
    // Names that tie, so the id tiebreak is exercised across a page boundary.
    for (let i = 0; i < 4; i++) await c.insertProduct({ name: "Same Name Lamp" });
    const expected = await c.database.db
      .select({ id: products.id })
      .from(products)
      .where(eq(products.active, true))
      .orderBy(asc(products.name), asc(products.id));

    const { all, pages } = await listAll({ pageSize: 3 });
    expect(all.map((p) => p.id)).toEqual(expected.map((r) => r.id));
    expect(new Set(all.map((p) => p.id)).size).toBe(all.length);
    expect(pages).toBe(Math.ceil(expected.length / 3));
    expect(all.every((p) => p.active)).toBe(true);
  });

  it("defaults to 20 per page, allows 100 and refuses more", async () => {
    for (let i = 0; i < 10; i++) await c.insertProduct({ name: `Filler ${i}` });
    const first = await c.catalog.listProducts({});
    expect(first.products).toHaveLength(20);
    expect(first.nextPageToken).not.toBe("");
    const big = await c.catalog.listProducts({ pageSize: 100 });
    expect(big.products.length).toBeGreaterThan(20);
    const err = await rpcError(c.catalog.listProducts({ pageSize: 101 }));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain("page_size");
  });

  it("searches sku, name and description, case-insensitively, with wildcards taken literally", async () => {
    const bySku = await c.catalog.listProducts({ query: "keyboard-mech" });
    expect(bySku.products.map((p) => p.sku)).toEqual(["KEYBOARD-MECH-TKL"]);
    const byDescription = await c.catalog.listProducts({ query: "SHIZUOKA" });
    expect(byDescription.products.map((p) => p.sku)).toEqual(["TEA-SENCHA-100G"]);
    const byName = await c.catalog.listProducts({ query: "mug" });
    // The discontinued mug is inactive, so not listed.
    expect(byName.products.map((p) => p.sku)).toEqual(["MUG-STONEWARE-12"]);
    // Unescaped, "%" would match everything; escaped, only the socks ("70% merino").
    const pctOnly = await c.catalog.listProducts({ query: "%" });
    expect(pctOnly.products.map((p) => p.sku)).toEqual(["SOCKS-MERINO-3PK"]);
    expect((await c.catalog.listProducts({ query: "_" })).products).toEqual([]);
    const pct = await c.insertProduct({ name: "Sale 100% cotton" });
    const hits = await c.catalog.listProducts({ query: "100%" });
    expect(hits.products.map((p) => p.id)).toEqual([pct.id]);
  });

  it("pages a query result with tokens bound to that query", async () => {
    const tag = `zq${randomUUID().slice(0, 6)}`;
    const made = [];
    for (let i = 0; i < 5; i++) made.push(await c.insertProduct({ name: `Widget ${tag} ${i}` }));
    const { all } = await listAll({ pageSize: 2, query: tag });
    expect(all.map((p) => p.id)).toEqual(made.map((p) => p.id));

    const first = await c.catalog.listProducts({ pageSize: 2, query: tag });
    // The same token with another query is refused, not silently applied.
    const other = await rpcError(
      c.catalog.listProducts({ pageSize: 2, query: "mug", pageToken: first.nextPageToken }),
    );
    expect(other.code).toBe(Code.INVALID_ARGUMENT);
    expect(other.message).toBe("invalid page_token");
  });

  it("rejects a page token it did not issue with INVALID_ARGUMENT", async () => {
    const forged = Buffer.from(JSON.stringify({ v: 1, n: "a", i: "nope", s: "x" })).toString(
      "base64url",
    );
    for (const pageToken of ["garbage!", "bm90IGpzb24", forged, "eyJ2IjoxfQ"]) {
      const err = await rpcError(c.catalog.listProducts({ pageToken }));
      expect(err.code).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toBe("invalid page_token");
    }
  });

  it("includes inactive products only for an admin who asks", async () => {
    const legacy = "MUG-LEGACY-8";
    const skus = async (opts = {}) =>
      (await listAll({ includeInactive: true, query: "mug" }, opts)).all.map((p) => p.sku);
    expect(await skus()).not.toContain(legacy);
    expect(await skus(c.customer)).not.toContain(legacy);
    expect(await skus(c.admin)).toContain(legacy);
    const bad = await rpcError(
      c.catalog.listProducts(
        { includeInactive: true },
        { headers: { authorization: "Bearer not.a.jwt" } },
      ),
    );
    expect(bad.code).toBe(Code.UNAUTHENTICATED);
  });
});

describe("GetProduct", () => {
  it("returns a product, inactive ones included", async () => {
    const [legacy] = await c.database.db
      .select()
      .from(products)
      .where(eq(products.sku, "MUG-LEGACY-8"));
    if (legacy === undefined) throw new Error("seed missing");
    const res = await c.catalog.getProduct({ productId: legacy.id });
    expect(res.product).toMatchObject({
      id: legacy.id,
      sku: "MUG-LEGACY-8",
      active: false,
      price: { currencyCode: "USD", amount: 1100n },
    });
    expect(res.product?.createTime).toBeDefined();
  });

  it("answers NOT_FOUND naming an unknown id", async () => {
    const id = randomUUID();
    const err = await rpcError(c.catalog.getProduct({ productId: id }));
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toBe(`product ${id} not found`);
  });
});

describe("admin: CreateProduct, UpdateProduct, AdjustStock", () => {
  const newProduct = () => ({
    sku: `CAT-${randomUUID().slice(0, 8).toUpperCase()}`,
    name: "Ceramic Pour-Over Dripper",
    description: "Fits size 02 filters.",
    price: { currencyCode: "USD", amount: 2850n },
    stock: 12,
    active: true,
  });

  it("creates a product an admin sends, and anyone can read it", async () => {
    const input = newProduct();
    const { product } = await c.catalog.createProduct({ product: input }, c.admin);
    expect(product).toMatchObject({ ...input, id: expect.any(String) });
    const read = await c.catalog.getProduct({ productId: product?.id ?? "" });
    expect(read.product).toEqual(product);
  });

  it("refuses callers without a token (UNAUTHENTICATED) and customers (PERMISSION_DENIED)", async () => {
    const [row] = await c.database.db.select().from(products).limit(1);
    const productId = row?.id ?? "";
    const calls = [
      (o?: object) => c.catalog.createProduct({ product: newProduct() }, o),
      (o?: object) =>
        c.catalog.updateProduct(
          { product: { id: productId, name: "x" }, updateMask: { paths: ["name"] } },
          o,
        ),
      (o?: object) => c.catalog.adjustStock({ productId, delta: 1 }, o),
    ];
    for (const call of calls) {
      expect((await rpcError(call())).code).toBe(Code.UNAUTHENTICATED);
      expect((await rpcError(call(c.customer))).code).toBe(Code.PERMISSION_DENIED);
    }
    const [after] = await c.database.db.select().from(products).where(eq(products.id, productId));
    expect(after).toEqual(row);
  });

  it("answers ALREADY_EXISTS for a taken sku, on create and on update", async () => {
    const input = newProduct();
    await c.catalog.createProduct({ product: input }, c.admin);
    const dup = await rpcError(
      c.catalog.createProduct({ product: { ...input, name: "Other" } }, c.admin),
    );
    expect(dup.code).toBe(Code.ALREADY_EXISTS);
    expect(dup.message).toContain(input.sku);

    const { product: second } = await c.catalog.createProduct({ product: newProduct() }, c.admin);
    const clash = await rpcError(
      c.catalog.updateProduct(
        { product: { id: second?.id ?? "", sku: input.sku }, updateMask: { paths: ["sku"] } },
        c.admin,
      ),
    );
    expect(clash.code).toBe(Code.ALREADY_EXISTS);
  });

  it("answers INVALID_ARGUMENT naming the bad field", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ sku: "lower case" }, "product.sku"],
      [{ sku: "" }, "sku is required"],
      [{ name: "" }, "name is required"],
      [{ name: "n".repeat(201) }, "product.name"],
      [{ price: { currencyCode: "USD", amount: -1n } }, "product.price"],
      [{ price: { currencyCode: "usd", amount: 1n } }, "product.price.currency_code"],
      [{ price: undefined }, "price is required"],
      [{ stock: -1 }, "product.stock"],
    ];
    for (const [patch, field] of cases) {
      const err = await rpcError(
        c.catalog.createProduct({ product: { ...newProduct(), ...patch } }, c.admin),
      );
      expect(err.code, field).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toContain(field);
    }
  });

  it("updates only the fields named in update_mask", async () => {
    const { product } = await c.catalog.createProduct({ product: newProduct() }, c.admin);
    if (product === undefined) throw new Error("no product");
    const { product: updated } = await c.catalog.updateProduct(
      {
        // Every field carries a new value; only name and price may change.
        product: {
          id: product.id,
          sku: "IGNORED-SKU",
          name: "Glass Pour-Over Dripper",
          description: "ignored",
          price: { currencyCode: "USD", amount: 3100n },
          stock: 999,
          active: false,
        },
        updateMask: { paths: ["name", "price"] },
      },
      c.admin,
    );
    expect(updated).toMatchObject({
      id: product.id,
      sku: product.sku,
      name: "Glass Pour-Over Dripper",
      description: product.description,
      price: { currencyCode: "USD", amount: 3100n },
      stock: product.stock,
      active: true,
    });
    expect(updated?.updateTime?.seconds).toBeGreaterThanOrEqual(product.updateTime?.seconds ?? 0n);

    // active = false is settable (the mask, not "non-zero", decides what changes).
    const { product: off } = await c.catalog.updateProduct(
      { product: { id: product.id }, updateMask: { paths: ["active", "description"] } },
      c.admin,
    );
    expect(off).toMatchObject({ active: false, description: "", name: "Glass Pour-Over Dripper" });
  });

  it("refuses masks naming stock or nothing, cleared required fields, and unknown ids", async () => {
    const { product } = await c.catalog.createProduct({ product: newProduct() }, c.admin);
    const id = product?.id ?? "";
    const invalid: [object, string][] = [
      [{ product: { id, stock: 5 }, updateMask: { paths: ["stock"] } }, "update_mask"],
      [{ product: { id }, updateMask: { paths: [] } }, "update_mask"],
      [{ product: { id }, updateMask: { paths: ["name"] } }, "name cannot be cleared"],
      [{ product: { id }, updateMask: { paths: ["price"] } }, "price cannot be cleared"],
      [{ product: { name: "x" }, updateMask: { paths: ["name"] } }, "product.id"],
    ];
    for (const [req, text] of invalid) {
      const err = await rpcError(c.catalog.updateProduct(req, c.admin));
      expect(err.code, text).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toContain(text);
    }
    const unknown = randomUUID();
    const missing = await rpcError(
      c.catalog.updateProduct(
        { product: { id: unknown, name: "x" }, updateMask: { paths: ["name"] } },
        c.admin,
      ),
    );
    expect(missing.code).toBe(Code.NOT_FOUND);
    expect(missing.message).toContain(unknown);
  });

  it("adjusts stock up and down, never below zero", async () => {
    const row = await c.insertProduct({ stock: 10 });
    const up = await c.catalog.adjustStock(
      { productId: row.id, delta: 5, reason: "restock" },
      c.admin,
    );
    expect(up.product?.stock).toBe(15);
    const down = await c.catalog.adjustStock(
      { productId: row.id, delta: -15, reason: "damaged" },
      c.admin,
    );
    expect(down.product?.stock).toBe(0);

    const err = await rpcError(c.catalog.adjustStock({ productId: row.id, delta: -1 }, c.admin));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain(row.sku);
    expect(err.message).toContain(row.id);
    expect((await c.catalog.getProduct({ productId: row.id })).product?.stock).toBe(0);

    const zero = await rpcError(c.catalog.adjustStock({ productId: row.id, delta: 0 }, c.admin));
    expect(zero.code).toBe(Code.INVALID_ARGUMENT);
    expect(zero.message).toContain("delta");
    const unknown = await rpcError(
      c.catalog.adjustStock({ productId: randomUUID(), delta: 1 }, c.admin),
    );
    expect(unknown.code).toBe(Code.NOT_FOUND);
  });

  it("concurrent adjustments all apply, and none takes stock below zero", async () => {
    const row = await c.insertProduct({ stock: 10 });
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, () =>
        c.catalog.adjustStock({ productId: row.id, delta: -1 }, c.admin),
      ),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(10);
    expect((await c.catalog.getProduct({ productId: row.id })).product?.stock).toBe(0);
  });

  it("writes one StockLow event to the outbox when stock crosses the threshold", async () => {
    const row = await c.insertProduct({
      stock: 8,
      sku: `LOW-${randomUUID().slice(0, 8).toUpperCase()}`,
    });
    const events = () =>
      c.database.db
        .select()
        .from(outbox)
        .where(and(eq(outbox.subject, "shop.catalog.stock_low"), like(outbox.type, "%StockLow")));
    const before = (await events()).length;
    await c.catalog.adjustStock({ productId: row.id, delta: -2 }, c.admin); // 6: above 5
    expect((await events()).length).toBe(before);
    await c.catalog.adjustStock({ productId: row.id, delta: -2 }, c.admin); // 4: crossed
    await c.catalog.adjustStock({ productId: row.id, delta: -1 }, c.admin); // 3: already low
    expect((await events()).length).toBe(before + 1);
  });
});
