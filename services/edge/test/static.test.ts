/**
 * The storefront's static serving (static.ts) over a real socket: content types,
 * caching headers, ETag/304, gzip, the SPA fallback for page routes, and the paths it
 * must never take from the API (or from outside its folder).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStaticSite } from "../src/static.js";

let dir: string;
let server: http.Server;
let base: string;
const INDEX = "<!doctype html><title>shop</title>";
const APP = `console.log(${JSON.stringify("x".repeat(4000))});`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "shopmesh-static-"));
  mkdirSync(join(dir, "assets"));
  writeFileSync(join(dir, "index.html"), INDEX);
  writeFileSync(join(dir, "assets", "index-abc123.js"), APP);
  writeFileSync(join(dir, "assets", "index-abc123.css"), "body{}");
  writeFileSync(join(dir, "robots.txt"), "User-agent: *\n");
  writeFileSync(join(tmpdir(), "shopmesh-static-secret.txt"), "secret");
  const site = createStaticSite(dir);
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    site.serve(req, res, url.pathname).then((served) => {
      if (!served) {
        res.statusCode = 404;
        res.end("api");
      }
    }, res.destroy.bind(res));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const get = (path: string, headers: Record<string, string> = {}) =>
  fetch(`${base}${path}`, { headers: { accept: "text/html", ...headers } });

describe("static site", () => {
  it("serves index.html at / without long caching", async () => {
    const res = await get("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
    expect(await res.text()).toBe(INDEX);
  });

  it("serves hashed assets with their type, immutable, gzipped when asked", async () => {
    const res = await get("/assets/index-abc123.js");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(res.headers.get("content-encoding")).toBe("gzip");
    expect(await res.text()).toBe(APP);
    const css = await get("/assets/index-abc123.css");
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    const raw = await new Promise<{ body: Buffer; enc: string | undefined }>((resolve) => {
      http.get(
        `${base}/assets/index-abc123.js`,
        { headers: { "accept-encoding": "gzip" } },
        (r) => {
          const chunks: Buffer[] = [];
          r.on("data", (c: Buffer) => chunks.push(c));
          r.on("end", () =>
            resolve({ body: Buffer.concat(chunks), enc: r.headers["content-encoding"] }),
          );
        },
      );
    });
    expect(raw.enc).toBe("gzip");
    expect(gunzipSync(raw.body).toString()).toBe(APP);
  });

  it("answers 304 to a matching If-None-Match", async () => {
    const first = await get("/robots.txt");
    const etag = first.headers.get("etag") as string;
    expect(etag).toMatch(/^".+"$/);
    const again = await get("/robots.txt", { "if-none-match": etag });
    expect(again.status).toBe(304);
  });

  it("answers page routes with index.html, but not missing files or non-HTML requests", async () => {
    for (const page of ["/orders/5b0c", "/cart", "/products/abc-123"]) {
      const res = await get(page);
      expect(res.status, page).toBe(200);
      expect(await res.text()).toBe(INDEX);
    }
    expect((await get("/assets/missing-123.js")).status).toBe(404);
    expect((await get("/cart", { accept: "application/json" })).status).toBe(404);
  });

  it("never shadows the API", async () => {
    for (const path of [
      "/v1/products",
      "/v1",
      "/shop.catalog.v1.CatalogService/ListProducts",
      "/grpc.health.v1.Health/Check",
      "/docs",
      "/openapi.json",
      "/healthz",
      "/readyz",
      "/.well-known/jwks.json",
    ]) {
      const res = await get(path);
      expect(await res.text(), path).toBe("api");
    }
  });

  it("never serves a file outside its folder", async () => {
    // Raw paths (fetch would normalise the dot segments away before sending).
    const rawGet = (path: string) =>
      new Promise<string>((resolve, reject) => {
        http
          .get({ host: "127.0.0.1", port: new URL(base).port, path }, (r) => {
            let text = "";
            r.on("data", (c: Buffer) => {
              text += c.toString();
            });
            r.on("end", () => resolve(text));
          })
          .on("error", reject);
      });
    for (const path of [
      "/../shopmesh-static-secret.txt",
      "/assets/../../shopmesh-static-secret.txt",
      "/%2e%2e/shopmesh-static-secret.txt",
      "/assets/..%2f..%2fshopmesh-static-secret.txt",
      "/%00",
      "/%E0%A4%A",
    ]) {
      expect(await rawGet(path), path).toBe("api");
    }
  });

  it("serves nothing when the assets are not built", async () => {
    const empty = mkdtempSync(join(tmpdir(), "shopmesh-static-empty-"));
    try {
      const site = createStaticSite(empty);
      const served = await site.serve(
        { headers: { accept: "text/html" }, method: "GET" } as never,
        {} as never,
        "/",
      );
      expect(served).toBe(false);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
