/**
 * The edge's micro-cache of public reads (read-cache.ts): which requests it may answer,
 * one load for concurrent misses, expiry, errors never kept, a bounded size.
 */
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { OrderService } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { describe, expect, it } from "vitest";
import { createReadCache } from "../src/read-cache.js";

const getProduct = CatalogService.method.getProduct;

describe("read cache", () => {
  it("takes only anonymous GETs of public methods without side effects", () => {
    const cache = createReadCache(1_000);
    expect(cache.cacheable(getProduct, "GET", {})).toBe(true);
    expect(cache.cacheable(CatalogService.method.listProducts, "GET", {})).toBe(true);
    expect(cache.cacheable(getProduct, "GET", { authorization: "Bearer x" })).toBe(false);
    expect(cache.cacheable(getProduct, "GET", { cacheControl: "no-cache" })).toBe(false);
    expect(cache.cacheable(getProduct, "GET", { cacheControl: "max-age=0, no-store" })).toBe(false);
    expect(cache.cacheable(OrderService.method.getOrder, "GET", {})).toBe(false); // needs a token
    expect(cache.cacheable(CatalogService.method.createProduct, "POST", {})).toBe(false);
    expect(createReadCache(0).cacheable(getProduct, "GET", {})).toBe(false);
  });

  it("loads a missing key once for concurrent readers, then answers from memory until expiry", async () => {
    const cache = createReadCache(80);
    let loads = 0;
    const load = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 20));
      return `body ${loads}`;
    };
    const first = await Promise.all([1, 2, 3].map(() => cache.get("k", load)));
    expect(loads).toBe(1);
    expect(first.map((r) => r.body)).toEqual(["body 1", "body 1", "body 1"]);
    expect(first.every((r) => !r.hit)).toBe(true);
    expect(await cache.get("k", load)).toEqual({ body: "body 1", hit: true });
    await new Promise((r) => setTimeout(r, 100));
    expect(await cache.get("k", load)).toEqual({ body: "body 2", hit: false });
  });

  it("keeps no error, and stays within its size", async () => {
    const cache = createReadCache(10_000, 2);
    await expect(cache.get("e", () => Promise.reject(new Error("NOT_FOUND")))).rejects.toThrow();
    expect(await cache.get("e", async () => "now found")).toEqual({
      body: "now found",
      hit: false,
    });
    await cache.get("b", async () => "b");
    await cache.get("c", async () => "c"); // evicts the oldest, "e"
    expect((await cache.get("e", async () => "again")).hit).toBe(false);
    expect((await cache.get("c", async () => "x")).hit).toBe(true);
  });
});
