/**
 * End to end: the real `npm start` (the launcher, every service its own process),
 * driven through the edge over REST, Connect and gRPC; then the saga under faults
 * (payments and the NATS server SIGKILLed mid-load). PostgreSQL is the server in
 * PG_URL (the machine's in CI, embedded otherwise), with fresh databases (DB_PREFIX);
 * NATS is a nats-server with JetStream this test starts, so it can kill it (both from
 * stack-harness.ts, shared with the other e2e tests).
 */
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { OrderService, OrderStatus } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { createGrpcClient } from "@shopmesh/runtime";
import { exportJWK, generateKeyPair, importJWK, type JWK, SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startStack } from "./stack-harness.js";

let stack: Stack;
let dataDir: string;
let base: string;
let edgePort: number;
let startedMs = 0;
let ADMIN_EMAIL: string;
let ADMIN_PASSWORD: string;
/** A service's own database, as the launcher created it. */
const serviceDb = (name: string) => stack.serviceDb(name);

beforeAll(async () => {
  stack = await startStack({ env: { RATE_LIMIT_RPS: "20", RATE_LIMIT_BURST: "400" } });
  ({
    dataDir,
    base,
    edgePort,
    startedMs,
    adminEmail: ADMIN_EMAIL,
    adminPassword: ADMIN_PASSWORD,
  } = stack);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
}, 60_000);

async function call(
  path: string,
  init: {
    method?: string;
    body?: unknown;
    token?: string;
    raw?: string;
    headers?: Record<string, string>;
  } = {},
) {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers["authorization"] = `Bearer ${init.token}`;
  if (init.body !== undefined || init.raw !== undefined)
    headers["content-type"] = "application/json";
  const res = await fetch(`${base}${path}`, {
    method: init.method ?? (init.body !== undefined || init.raw !== undefined ? "POST" : "GET"),
    headers,
    body: init.raw ?? (init.body === undefined ? undefined : JSON.stringify(init.body)),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text);
  } catch {
    json = { text };
  }
  return { status: res.status, json, text, headers: res.headers };
}

async function register(
  email = `u-${randomUUID().slice(0, 8)}@example.com`,
  password = "correct horse battery",
) {
  const reg = await call("/v1/users", { body: { email, password, displayName: "Test User" } });
  expect(reg.status).toBe(200);
  const login = await call("/v1/auth/login", { body: { email, password } });
  expect(login.status).toBe(200);
  return {
    email,
    password,
    id: reg.json["id"] as string,
    token: login.json["accessToken"] as string,
    refresh: login.json["refreshToken"] as string,
  };
}

describe("npm start", () => {
  it("is ready within 60 s", () => {
    expect(startedMs).toBeLessThan(60_000);
  });
});

describe("identity through the edge", () => {
  it("register, login and GetMe give the same user over REST, Connect and gRPC", async () => {
    const u = await register();
    const me = await call("/v1/users/me", { token: u.token });
    expect(me.status).toBe(200);
    expect(me.json).toMatchObject({ id: u.id, email: u.email });

    const connectJson = await call("/shop.identity.v1.IdentityService/GetMe", {
      body: {},
      token: u.token,
    });
    expect(connectJson.status).toBe(200);
    expect((connectJson.json["user"] as Record<string, unknown>)["id"]).toBe(u.id);

    const headers = { authorization: `Bearer ${u.token}` };
    const viaConnect = createClient(
      IdentityService,
      createConnectTransport({ baseUrl: base, httpVersion: "1.1" }),
    );
    expect((await viaConnect.getMe({}, { headers })).user?.id).toBe(u.id);
    const viaGrpc = createClient(IdentityService, createGrpcTransport({ baseUrl: base }));
    expect((await viaGrpc.getMe({}, { headers })).user?.id).toBe(u.id);
    // The runtime's grpc-js client speaks h2c to the edge too.
    const grpcJs = createGrpcClient(IdentityService, `127.0.0.1:${edgePort}`);
    expect((await grpcJs.getMe({}, { headers })).user?.email).toBe(u.email);
    grpcJs.close();
  });

  it("answers wrong password and unknown email with identical 401 bodies", async () => {
    const u = await register();
    const wrong = await call("/v1/auth/login", {
      body: { email: u.email, password: "not the password" },
    });
    const unknown = await call("/v1/auth/login", {
      body: { email: `nobody-${randomUUID()}@example.com`, password: "not the password" },
    });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.text).toBe(unknown.text);
  });

  it("rejects expired, alg-none, foreign-key and wrong-audience tokens with 401", async () => {
    const u = await register();
    const payload = JSON.parse(
      Buffer.from(u.token.split(".")[1] as string, "base64url").toString(),
    );
    const header = JSON.parse(Buffer.from(u.token.split(".")[0] as string, "base64url").toString());
    // identity's real signing key, read from its database, to forge near-valid tokens.
    const idb = serviceDb("identity");
    const [row] = await idb`select private_jwk from signing_keys where kid = ${header.kid}`;
    await idb.end();
    const realKey = await importJWK(row?.["private_jwk"] as JWK, "EdDSA");
    const sign = (
      key: Parameters<SignJWT["sign"]>[0],
      claims: Record<string, unknown>,
      kid = header.kid,
    ) => new SignJWT({ ...payload, ...claims }).setProtectedHeader({ alg: "EdDSA", kid }).sign(key);

    const now = Math.floor(Date.now() / 1000);
    const expired = await sign(realKey, { exp: now - 60, iat: now - 1000 });
    const wrongAudience = await sign(realKey, { aud: "someone-else" });
    const foreign = await sign((await generateKeyPair("EdDSA", { crv: "Ed25519" })).privateKey, {});
    const none = new UnsecuredJWT(payload).encode();
    // Sanity: the forging works, a token signed with the real key and good claims passes.
    expect((await call("/v1/users/me", { token: await sign(realKey, {}) })).status).toBe(200);
    for (const token of [expired, wrongAudience, foreign, none, "garbage"]) {
      const res = await call("/v1/users/me", { token });
      expect(res.status, token).toBe(401);
      expect(res.json["code"]).toBe("unauthenticated");
    }
    expect((await call("/v1/users/me")).status).toBe(401);
    void exportJWK;
  });

  it("forbids a customer from ListUsers (403) and lets the admin list", async () => {
    const u = await register();
    const res = await call("/v1/users", { token: u.token });
    expect(res.status).toBe(403);
    expect(res.json["code"]).toBe("permission_denied");
    const admin = await call("/v1/auth/login", {
      body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD },
    });
    expect(admin.status).toBe(200);
    const list = await call("/v1/users?page_size=2", {
      token: admin.json["accessToken"] as string,
    });
    expect(list.status).toBe(200);
    expect((list.json["users"] as unknown[]).length).toBe(2);
    expect(list.json["nextPageToken"]).not.toBe("");
  });

  it("revokes the whole refresh family when a rotated token is reused", async () => {
    const u = await register();
    const first = await call("/v1/auth/refresh", { body: { refreshToken: u.refresh } });
    expect(first.status).toBe(200);
    const rotated = first.json["refreshToken"] as string;
    const reuse = await call("/v1/auth/refresh", { body: { refreshToken: u.refresh } });
    expect(reuse.status).toBe(401);
    const afterRevoke = await call("/v1/auth/refresh", { body: { refreshToken: rotated } });
    expect(afterRevoke.status).toBe(401);
  });

  it("answers bad input with the right status and a message naming the problem", async () => {
    const u = await register();
    const dup = await call("/v1/users", {
      body: { email: u.email.toUpperCase(), password: "another password 1" },
    });
    expect(dup.status).toBe(409);
    expect(dup.json["code"]).toBe("already_exists");
    const badEmail = await call("/v1/users", {
      body: { email: "not-an-email", password: "long enough pw" },
    });
    expect(badEmail.status).toBe(400);
    expect(badEmail.json["message"]).toContain("email");
    const shortPw = await call("/v1/users", {
      body: { email: `s-${randomUUID()}@example.com`, password: "short" },
    });
    expect(shortPw.status).toBe(400);
    expect(shortPw.json["message"]).toContain("password");
    const malformed = await call("/v1/users", { raw: "{not json" });
    expect(malformed.status).toBe(400);
    expect(malformed.json["message"]).toMatch(/JSON/);
    const big = await call("/v1/users", {
      raw: JSON.stringify({ email: "a@b.co", password: "x".repeat(2 * 1024 * 1024) }),
    });
    expect(big.status).toBe(413);
    const unknownProduct = await call(`/v1/products/${randomUUID()}`);
    expect(unknownProduct.status).toBe(404);
    expect(unknownProduct.json["code"]).toBe("not_found");
    const wrongVerb = await call("/v1/auth/login", { method: "GET" });
    expect(wrongVerb.status).toBe(405);
    // And the stack keeps serving.
    expect((await call("/v1/products?page_size=1")).status).toBe(200);
  });
});

describe("catalog through the edge", () => {
  it("lists the seeded demo catalog with paging and gets one product", async () => {
    const page1 = await call("/v1/products?page_size=5");
    expect(page1.status).toBe(200);
    const products = page1.json["products"] as Record<string, unknown>[];
    expect(products).toHaveLength(5);
    const page2 = await call(
      `/v1/products?pageSize=5&pageToken=${encodeURIComponent(page1.json["nextPageToken"] as string)}`,
    );
    const ids = new Set(
      [...products, ...(page2.json["products"] as Record<string, unknown>[])].map((p) => p["id"]),
    );
    expect(ids.size).toBe(10);
    const one = await call(`/v1/products/${products[0]?.["id"]}`);
    expect(one.status).toBe(200);
    expect(one.json).toMatchObject({ id: products[0]?.["id"], sku: products[0]?.["sku"] });
    expect((one.json["price"] as Record<string, unknown>)["currencyCode"]).toBe("USD");
  });

  it("answers repeated anonymous reads from the edge's micro-cache, and never signed-in ones", async () => {
    const path = "/v1/products?page_size=37"; // a page size no other test asks for
    const first = await call(path);
    const second = await call(path);
    expect([first.status, second.status]).toEqual([200, 200]);
    expect([first.headers.get("x-cache"), second.headers.get("x-cache")]).toEqual(["miss", "hit"]);
    expect(second.text).toBe(first.text);
    expect(second.headers.get("cache-control")).toBe("public, max-age=1");
    // Read through: when asked, and for a signed-in caller (their view may differ).
    const fresh = await call(path, { headers: { "cache-control": "no-cache" } });
    expect(fresh.headers.get("x-cache")).toBeNull();
    const u = await register();
    expect((await call(path, { token: u.token })).headers.get("x-cache")).toBeNull();
    // Errors are not kept: an unknown product is asked for again each time.
    const missing = `/v1/products/${randomUUID()}`;
    expect((await call(missing)).status).toBe(404);
    expect((await call(missing)).headers.get("x-cache")).toBeNull();
  });
});

describe("API documents", () => {
  it("serves OpenAPI 3 listing every REST path, the docs page and the JWKS", async () => {
    const doc = await call("/openapi.json");
    expect(doc.status).toBe(200);
    expect(String(doc.json["openapi"])).toMatch(/^3\./);
    const paths = Object.keys(doc.json["paths"] as object);
    for (const p of [
      "/v1/users",
      "/v1/auth/login",
      "/v1/auth/refresh",
      "/v1/users/me",
      "/v1/products",
      "/v1/orders",
      "/v1/payments",
      "/v1/notifications",
    ]) {
      expect(paths).toContain(p);
    }
    const docs = await fetch(`${base}/docs`);
    expect(docs.headers.get("content-type")).toMatch(/text\/html/);
    const html = await docs.text();
    expect(html).toContain("/openapi.json");
    expect(html).not.toContain("ListProducts"); // drawn by the page's script (see the browser test)
    const jwks = await call("/.well-known/jwks.json");
    expect((jwks.json["keys"] as JWK[])[0]).toMatchObject({
      kty: "OKP",
      crv: "Ed25519",
      alg: "EdDSA",
    });
    expect((await call("/healthz")).status).toBe(200);
    expect((await call("/readyz")).status).toBe(200);
  });
});

/** Debian's Chromium, which .ci/run installs; a machine without it skips the browser check. */
const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

describe("the docs page in a real browser", () => {
  it.skipIf(chromium === undefined)(
    "renders every operation from /openapi.json",
    () => {
      const dir = mkdtempSync(join(tmpdir(), "shopmesh-chromium-"));
      try {
        const res = spawnSync(
          chromium as string,
          [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            `--user-data-dir=${dir}`,
            "--virtual-time-budget=10000",
            "--dump-dom",
            `${base}/docs`,
          ],
          { encoding: "utf8", timeout: 60_000 },
        );
        // The operations are drawn by the page's script from /openapi.json, not in the HTML sent.
        for (const op of [
          "Register",
          "ListProducts",
          "PlaceOrder",
          "CancelOrder",
          "ListPayments",
          "ListNotifications",
        ]) {
          expect(res.stdout, op).toContain(op);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );
});

describe("edge protections", () => {
  it("answers CORS preflights and exposes the headers clients need", async () => {
    const res = await fetch(`${base}/v1/products`, {
      method: "OPTIONS",
      headers: { origin: "http://shop.example", "access-control-request-method": "GET" },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-headers")).toContain("authorization");
  });

  it("echoes x-request-id, or makes one", async () => {
    const given = await call("/healthz", { headers: { "x-request-id": "req-123" } });
    expect(given.headers.get("x-request-id")).toBe("req-123");
    expect((await call("/healthz")).headers.get("x-request-id")).toMatch(/[0-9a-f-]{36}/);
    // Not a sane token (too long, or characters a log line should not carry): replaced.
    for (const bad of ["x".repeat(129), "a b", "<script>"]) {
      const res = await call("/healthz", { headers: { "x-request-id": bad } });
      expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it("rate-limits a client with 429 and Retry-After", async () => {
    const results = await Promise.all(
      Array.from({ length: 500 }, () => call("/v1/products?page_size=1")),
    );
    const limited = results.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(Number(limited[0]?.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(limited[0]?.json["code"]).toBe("resource_exhausted");
  });
});

describe("the saga through the edge", () => {
  it("places an order with tok_visa and sees it CONFIRMED", async () => {
    await new Promise((r) => setTimeout(r, 1_200)); // let the rate-limit bucket refill
    const u = await register();
    const list = await call("/v1/products?page_size=20");
    const product = (list.json["products"] as Record<string, unknown>[]).find(
      (p) => Number(p["stock"]) > 100,
    );
    expect(product).toBeDefined();
    const placed = await call("/v1/orders", {
      token: u.token,
      body: { items: [{ productId: product?.["id"], quantity: 2 }], paymentToken: "tok_visa" },
      headers: { "idempotency-key": `k-${randomUUID()}` },
    });
    expect(placed.status).toBe(200);
    const orderId = placed.json["id"] as string;
    const orders = createClient(
      OrderService,
      createConnectTransport({ baseUrl: base, httpVersion: "1.1" }),
    );
    await expect
      .poll(
        async () =>
          (await orders.getOrder({ orderId }, { headers: { authorization: `Bearer ${u.token}` } }))
            .order?.status,
        { timeout: 15_000, interval: 200 },
      )
      .toBe(OrderStatus.CONFIRMED);
  });
});

describe("the saga's outcomes through REST", () => {
  type Json = Record<string, unknown>;
  let u: Awaited<ReturnType<typeof register>>;
  let productId: string;

  // no-cache: the stock as it is now, not the edge's copy of up to a second ago.
  const stockOf = async (id: string) =>
    Number(
      (await call(`/v1/products/${id}`, { headers: { "cache-control": "no-cache" } })).json[
        "stock"
      ],
    );
  const order = (token: string, body: Json, headers: Record<string, string> = {}) =>
    call("/v1/orders", { token, body, headers });
  const settled = async (id: string, token: string) => {
    await expect
      .poll(async () => (await call(`/v1/orders/${id}`, { token })).json["status"], {
        timeout: 20_000,
        interval: 200,
      })
      .not.toBe("ORDER_STATUS_PENDING_PAYMENT");
    return (await call(`/v1/orders/${id}`, { token })).json;
  };
  const paymentsOf = async (id: string, token: string) =>
    ((await call(`/v1/payments?order_id=${id}`, { token })).json["payments"] ?? []) as Json[];
  const notified = (token: string, kind: string, id: string) =>
    expect
      .poll(
        async () =>
          (
            (await call("/v1/notifications?page_size=100", { token })).json[
              "notifications"
            ] as Json[]
          ).some((n) => n["kind"] === kind && n["orderId"] === id),
        { timeout: 20_000, interval: 250 },
      )
      .toBe(true);

  beforeAll(async () => {
    await new Promise((r) => setTimeout(r, 1_200)); // let the rate-limit bucket refill
    u = await register();
    const list = await call("/v1/products?page_size=50");
    const p = (list.json["products"] as Json[]).find(
      (x) => Number(x["stock"]) >= 50 && x["sku"] !== "BENCH-STICKER-PACK",
    );
    productId = p?.["id"] as string;
  });

  it("tok_visa: CONFIRMED, stock down, one captured payment, a notification", async () => {
    const before = await stockOf(productId);
    const placed = await order(u.token, {
      items: [{ productId, quantity: 3 }],
      paymentToken: "tok_visa",
    });
    expect(placed.status).toBe(200);
    expect(placed.json["status"]).toBe("ORDER_STATUS_PENDING_PAYMENT");
    const id = placed.json["id"] as string;
    const done = await settled(id, u.token);
    expect(done["status"]).toBe("ORDER_STATUS_CONFIRMED");
    expect((done["history"] as Json[]).map((h) => h["status"])).toEqual([
      "ORDER_STATUS_PENDING_PAYMENT",
      "ORDER_STATUS_CONFIRMED",
    ]);
    expect(await stockOf(productId)).toBe(before - 3);
    const payments = await paymentsOf(id, u.token);
    expect(payments.map((p) => p["status"])).toEqual(["PAYMENT_STATUS_CAPTURED"]);
    await notified(u.token, "NOTIFICATION_KIND_ORDER_CONFIRMED", id);
  });

  it("tok_chargeDeclined: CANCELLED, stock restored, a PaymentFailed notification", async () => {
    const before = await stockOf(productId);
    const placed = await order(u.token, {
      items: [{ productId, quantity: 2 }],
      paymentToken: "tok_chargeDeclined",
    });
    const id = placed.json["id"] as string;
    const done = await settled(id, u.token);
    expect(done["status"]).toBe("ORDER_STATUS_CANCELLED");
    await expect.poll(() => stockOf(productId), { timeout: 10_000 }).toBe(before);
    expect((await paymentsOf(id, u.token)).map((p) => p["status"])).toEqual([
      "PAYMENT_STATUS_FAILED",
    ]);
    await notified(u.token, "NOTIFICATION_KIND_PAYMENT_FAILED", id);
  });

  it("cancelling a confirmed order refunds the payment and restores the stock", async () => {
    const before = await stockOf(productId);
    const placed = await order(u.token, {
      items: [{ productId, quantity: 1 }],
      paymentToken: "tok_visa",
    });
    const id = placed.json["id"] as string;
    expect((await settled(id, u.token))["status"]).toBe("ORDER_STATUS_CONFIRMED");
    const cancelled = await call(`/v1/orders/${id}:cancel`, {
      token: u.token,
      body: { reason: "changed my mind" },
    });
    expect(cancelled.status).toBe(200);
    expect(cancelled.json["status"]).toBe("ORDER_STATUS_CANCELLED");
    expect(await stockOf(productId)).toBe(before);
    await expect
      .poll(async () => (await paymentsOf(id, u.token)).map((p) => p["status"]), {
        timeout: 20_000,
        interval: 250,
      })
      .toEqual(["PAYMENT_STATUS_REFUNDED"]);
    await notified(u.token, "NOTIFICATION_KIND_PAYMENT_REFUNDED", id);
  });

  it("the same idempotency key twice gives the same order and one payment", async () => {
    const key = `same-${randomUUID()}`;
    const body = { items: [{ productId, quantity: 1 }], paymentToken: "tok_visa" };
    const [a, b] = await Promise.all([
      order(u.token, body, { "idempotency-key": key }),
      order(u.token, body, { "idempotency-key": key }),
    ]);
    expect(a.status).toBe(200);
    expect(b.json["id"]).toBe(a.json["id"]);
    const again = await order(u.token, { ...body, idempotencyKey: key });
    expect(again.json["id"]).toBe(a.json["id"]);
    await settled(a.json["id"] as string, u.token);
    expect(await paymentsOf(a.json["id"] as string, u.token)).toHaveLength(1);
  });

  it("answers bad orders with 404/400/409/404/401 and writes nothing", async () => {
    const before = await stockOf(productId);
    const mine = (await call("/v1/orders?page_size=100", { token: u.token })).json[
      "orders"
    ] as Json[];
    const unknown = await order(u.token, {
      items: [{ productId: randomUUID(), quantity: 1 }],
      paymentToken: "tok_visa",
    });
    expect(unknown.status).toBe(404);
    expect(unknown.json["message"]).toMatch(/not found/);
    const zero = await order(u.token, {
      items: [{ productId, quantity: 0 }],
      paymentToken: "tok_visa",
    });
    expect(zero.status).toBe(400);
    expect(zero.json["message"]).toContain("quantity");
    const tooMany = await order(u.token, {
      items: [{ productId, quantity: 1000 }],
      paymentToken: "tok_visa",
    });
    expect(tooMany.status).toBe(409);
    expect(tooMany.json["message"]).toMatch(/stock/);
    const noToken = await call("/v1/orders", {
      body: { items: [{ productId, quantity: 1 }], paymentToken: "tok_visa" },
    });
    expect(noToken.status).toBe(401);
    const other = await register();
    const someoneElses = await call(`/v1/orders/${mine[0]?.["id"]}`, { token: other.token });
    expect(someoneElses.status).toBe(404);
    expect(
      (await call(`/v1/orders/${mine[0]?.["id"]}:cancel`, { token: other.token, body: {} })).status,
    ).toBe(404);
    // Nothing written: same stock, same orders.
    expect(await stockOf(productId)).toBe(before);
    const after = (await call("/v1/orders?page_size=100", { token: u.token })).json[
      "orders"
    ] as Json[];
    expect(after.length).toBe(mine.length);
  });
});

describe("the saga under faults", () => {
  it("settles 200 concurrent orders while payments and NATS are SIGKILLed and restarted", async () => {
    await new Promise((r) => setTimeout(r, 1_500));
    const users = await Promise.all([1, 2, 3, 4].map(() => register()));
    const catalogDb = serviceDb("catalog");
    const stockRows =
      await catalogDb`select id, stock from products where active and stock >= 300 order by sku limit 2`;
    expect(stockRows.length).toBeGreaterThanOrEqual(1);
    const initial = new Map(stockRows.map((r) => [r["id"] as string, Number(r["stock"])]));
    const productIds = [...initial.keys()];
    const stackInfo = () =>
      JSON.parse(readFileSync(join(dataDir, "stack.json"), "utf8")) as {
        services: { service: string; pid: number }[];
      };
    const paymentsPid = () => stackInfo().services.find((p) => p.service === "payments")?.pid ?? 0;

    const placed: string[] = [];
    const failures: string[] = [];
    let next = 0;
    const N = 200;
    const worker = async () => {
      while (next < N) {
        const i = next++;
        const u = users[i % users.length] as Awaited<ReturnType<typeof register>>;
        if (i === 60) process.kill(paymentsPid(), "SIGKILL");
        if (i === 100) {
          stack.nats.kill();
          setTimeout(stack.nats.start, 1_500);
        }
        const res = await call("/v1/orders", {
          token: u.token,
          body: {
            items: [{ productId: productIds[i % productIds.length], quantity: 1 + (i % 3) }],
            paymentToken: i % 10 === 0 ? "tok_chargeDeclined" : "tok_visa",
            idempotencyKey: `fault-${i}`,
          },
        });
        if (res.status === 200) placed.push(res.json["id"] as string);
        else failures.push(`${res.status} ${res.text}`);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    expect(failures).toEqual([]);
    expect(placed).toHaveLength(N);

    const ordersDb = serviceDb("orders");
    const paymentsDb = serviceDb("payments");
    // Every order reaches a final state.
    await expect
      .poll(
        async () =>
          (
            await ordersDb`select count(*)::int as n from orders where status = 'PENDING_PAYMENT'`
          )[0]?.["n"],
        { timeout: 120_000, interval: 500 },
      )
      .toBe(0);
    const orders = await ordersDb`select id, status from orders where id = any(${placed}::uuid[])`;
    expect(orders).toHaveLength(N);
    expect(orders.every((o) => o["status"] === "CONFIRMED" || o["status"] === "CANCELLED")).toBe(
      true,
    );
    // No order captured twice; confirmed orders have exactly one captured payment.
    const payments =
      await paymentsDb`select order_id, status from payments where order_id = any(${placed}::uuid[])`;
    const captured = payments
      .filter((p) => p["status"] === "CAPTURED")
      .map((p) => p["order_id"] as string);
    expect(new Set(captured).size).toBe(captured.length);
    const confirmed = orders
      .filter((o) => o["status"] === "CONFIRMED")
      .map((o) => o["id"] as string);
    expect(new Set(captured)).toEqual(new Set(confirmed));
    expect(confirmed.length).toBeGreaterThanOrEqual(N * 0.85);
    // Stock plus what was sold is what we started with, for every product.
    const sold = await ordersDb`
      select i.product_id, sum(i.quantity)::int as n from order_items i join orders o on o.id = i.order_id
      where o.status = 'CONFIRMED' and o.id = any(${placed}::uuid[]) group by i.product_id`;
    const now =
      await catalogDb`select id, stock from products where id = any(${productIds}::uuid[])`;
    for (const p of now) {
      const s = Number(sold.find((r) => r["product_id"] === p["id"])?.["n"] ?? 0);
      expect(Number(p["stock"]) + s, `product ${p["id"]}`).toBe(initial.get(p["id"] as string));
    }
    // Every outbox drains to zero.
    const dbs = [ordersDb, paymentsDb, catalogDb, serviceDb("identity")];
    for (const db of dbs) {
      await expect
        .poll(
          async () =>
            (await db`select count(*)::int as n from outbox where published_at is null`)[0]?.["n"],
          {
            timeout: 30_000,
          },
        )
        .toBe(0);
    }
    await Promise.all([...dbs].map((db) => db.end()));
  }, 240_000);
});

describe("stopping", () => {
  it("stops on Ctrl-C and leaves no process behind", async () => {
    const stackFile = JSON.parse(readFileSync(join(dataDir, "stack.json"), "utf8")) as {
      services: { pid: number }[];
      nats?: { pid?: number };
    };
    const pids = [...stackFile.services.map((p) => p.pid), stackFile.nats?.pid ?? 0].filter(
      (p) => p > 0,
    );
    expect(pids.length).toBeGreaterThanOrEqual(6);
    // Ctrl-C in a terminal: SIGINT to the whole foreground process group.
    process.kill(-(stack.process.pid as number), "SIGINT");
    await new Promise((r) => stack.process.once("exit", r));
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await expect.poll(() => pids.filter(alive), { timeout: 10_000 }).toEqual([]);
  }, 30_000);
});
