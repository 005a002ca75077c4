#!/usr/bin/env node
/**
 * End-to-end smoke test over REST, through whatever serves the edge's port (the Envoy
 * gateway in the kind job, a port-forward, or `npm start`):
 *
 *   node scripts/smoke-test.mjs http://127.0.0.1:8080
 *
 * Waits for /readyz, registers a user, logs in, orders one unit of an in-stock demo
 * product with the test card tok_visa, and waits until the saga (orders -> NATS ->
 * payments -> NATS -> orders) has made the order CONFIRMED. Exit 0 on success, 1 with
 * the step that failed. Plain Node (fetch), no dependencies.
 */

const base = (process.argv[2] ?? process.env["SMOKE_URL"] ?? "http://127.0.0.1:8080").replace(
  /\/$/,
  "",
);
const deadlineMs = Number(process.env["SMOKE_TIMEOUT_MS"] ?? 180_000);
const started = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) =>
  process.stdout.write(`smoke: ${msg} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);

class StepError extends Error {}

async function call(method, path, { body, token } = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(body ? { "content-type": "application/json" } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { raw: text.slice(0, 200) };
  }
  return { status: res.status, json };
}

function expectStatus(step, res, status) {
  if (res.status !== status) {
    throw new StepError(
      `${step}: HTTP ${res.status}, expected ${status}: ${JSON.stringify(res.json)}`,
    );
  }
  return res.json;
}

async function waitUntil(step, probe, intervalMs = 1000) {
  let last = "no answer yet";
  while (Date.now() - started < deadlineMs) {
    try {
      const outcome = await probe();
      if (outcome.done) return outcome.value;
      last = outcome.why;
    } catch (err) {
      if (err instanceof StepError) throw err;
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(intervalMs);
  }
  throw new StepError(`${step}: gave up after ${deadlineMs / 1000} s (last: ${last})`);
}

async function main() {
  log(`against ${base}`);
  await waitUntil("edge ready", async () => {
    const res = await call("GET", "/readyz");
    return { done: res.status === 200, why: `/readyz ${res.status}` };
  });
  log("edge ready");

  const products = expectStatus(
    "list products",
    await call("GET", "/v1/products?page_size=50"),
    200,
  );
  const product = (products.products ?? []).find((p) => p.active !== false && (p.stock ?? 0) > 0);
  if (!product) throw new StepError("list products: no active product with stock (demo seed off?)");
  log(`product ${product.sku ?? product.id} (stock ${product.stock})`);

  const email = `smoke-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
  const password = "correct horse battery staple";
  expectStatus(
    "register",
    await call("POST", "/v1/users", { body: { email, password, displayName: "Smoke Test" } }),
    200,
  );
  const login = expectStatus(
    "login",
    await call("POST", "/v1/auth/login", { body: { email, password } }),
    200,
  );
  const token = login.accessToken;
  if (!token) throw new StepError("login: no accessToken in the answer");
  log(`registered and logged in as ${email}`);

  const placed = expectStatus(
    "place order",
    await call("POST", "/v1/orders", {
      token,
      body: {
        items: [{ productId: product.id, quantity: 1 }],
        paymentToken: "tok_visa",
        idempotencyKey: `smoke-${Date.now()}`,
      },
    }),
    200,
  );
  if (!placed.id) throw new StepError(`place order: no order id in ${JSON.stringify(placed)}`);
  log(`order ${placed.id} placed: ${placed.status}`);

  const order = await waitUntil(
    "order confirmed",
    async () => {
      const got = expectStatus(
        "get order",
        await call("GET", `/v1/orders/${placed.id}`, { token }),
        200,
      );
      if (got.status === "ORDER_STATUS_CANCELLED") {
        throw new StepError(`order ${placed.id} was CANCELLED: ${JSON.stringify(got)}`);
      }
      return { done: got.status === "ORDER_STATUS_CONFIRMED", value: got, why: got.status };
    },
    500,
  );
  log(`order ${order.id} CONFIRMED (payment ${order.paymentId || "?"})`);
}

main().then(
  () => log("ok"),
  (err) => {
    process.stderr.write(
      `smoke: FAILED: ${err instanceof StepError ? err.message : (err?.stack ?? err)}\n`,
    );
    process.exit(1);
  },
);
