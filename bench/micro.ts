/**
 * Micro-benchmarks of the per-request work the CPU profiles point at, each in
 * isolation in this process: CPU microseconds per operation (process.cpuUsage, so a
 * busy machine slows the wall clock more than these numbers) for the code as it is
 * and, where the fix is obvious, for the cheaper variant next to it.
 *
 *   node --import tsx bench/micro.ts
 */
import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { products } from "@shopmesh/catalog/db/schema.js";
import {
  GetProductRequestSchema,
  GetProductResponseSchema,
} from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { ReserveStockRequestSchema } from "@shopmesh/gen/shop/catalog/v1/inventory_pb.js";
import { PlaceOrderRequestSchema } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { hashPassword, verifyPassword } from "@shopmesh/identity/passwords.js";
import { formatMoney } from "@shopmesh/notifications/messages.js";
import { createTokenVerifier } from "@shopmesh/runtime/auth.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { createTestKeys, TEST_AUDIENCE, TEST_ISSUER } from "@shopmesh/runtime/testing.js";
import { validateMessage } from "@shopmesh/runtime/validation.js";
import { eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";

interface Row {
  name: string;
  cpuUs: number;
  wallUs: number;
}
const rows: Row[] = [];

async function measure(name: string, fn: () => unknown, minMs = 400): Promise<void> {
  // Warm up (JIT), then run batches until minMs of wall time has passed.
  const slow = minMs > 1_000;
  for (let i = 0; i < (slow ? 2 : 200); i++) await fn();
  let n = 0;
  const batch = slow ? 1 : 50;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < minMs) {
    for (let i = 0; i < batch; i++) await fn();
    n += batch;
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  rows.push({ name, cpuUs: (cpu.user + cpu.system) / n, wallUs: (wall * 1000) / n });
}

const productId = "6cda6fe5-e655-4a0c-a700-9434866e9776";

// 1. Token verification (edge admission, then again in each service that authenticates).
const keys = await createTestKeys();
const verifier = createTokenVerifier({
  issuer: TEST_ISSUER,
  audience: TEST_AUDIENCE,
  fetchJwks: keys.fetchJwks,
});
const token = await keys.sign("0d2f9d0e-0000-4000-8000-000000000001", ["customer"]);
await measure("jwt verify (jose EdDSA, runtime createTokenVerifier)", () => verifier.verify(token));
const memo = new Map<string, Promise<unknown>>();
await measure("jwt verify, memoised per token string (Map hit)", () => {
  let p = memo.get(token);
  if (p === undefined) {
    p = verifier.verify(token);
    memo.set(token, p);
  }
  return p;
});

// 1b. Login: argon2id verification (identity's parameters), on the libuv pool.
const stored = await hashPassword("correct horse battery staple");
await measure(
  "argon2id verify (identity's ARGON2_OPTIONS), one at a time",
  () => verifyPassword(stored, "correct horse battery staple"),
  2_000,
);

// 2. notifications formatMoney: an Intl.NumberFormat per call.
const money = { currencyCode: "USD", amount: 12_345n };
await measure("notifications formatMoney (new Intl.NumberFormat per call)", () =>
  formatMoney(money),
);
const usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
await measure("Intl.NumberFormat cached per currency, format only", () =>
  usd.format("123.45" as unknown as number),
);

// 3. The per-call child logger of grpc-server's callContext (LOG_LEVEL=warn: nothing logged).
const logger = createLogger("micro", "warn");
await measure("pino logger.child({method, request_id}) per call, level warn", () =>
  logger.child({ method: "/shop.catalog.v1.CatalogService/GetProduct", request_id: "x" }),
);

// 4. protovalidate on incoming requests (grpc-server decode → validateMessage).
const getReq = create(GetProductRequestSchema, { productId });
await measure("validate GetProductRequest (uuid rule)", () =>
  validateMessage(GetProductRequestSchema, getReq),
);
const placeReq = create(PlaceOrderRequestSchema, {
  items: [{ productId, quantity: 1 }],
  paymentToken: "tok_visa",
});
await measure("validate PlaceOrderRequest (CEL unique(), 1 item)", () =>
  validateMessage(PlaceOrderRequestSchema, placeReq),
);
const reserveReq = create(ReserveStockRequestSchema, {
  orderId: productId,
  items: [{ productId, quantity: 1 }],
});
await measure("validate ReserveStockRequest (1 item)", () =>
  validateMessage(ReserveStockRequestSchema, reserveReq),
);

// 5. drizzle: building GetProduct's SELECT on every call vs a prepared query.
const db = drizzle.mock();
await measure("drizzle select().from(products).where(eq(id)) → SQL, per call", () =>
  db.select().from(products).where(eq(products.id, productId)).toSQL(),
);

// 6. Encoding: GetProductResponse as the edge's REST JSON and as protobuf binary.
const res = create(GetProductResponseSchema, {
  product: {
    id: productId,
    sku: "BENCH-STICKER-PACK",
    name: "Sticker Pack (benchmark)",
    description: "Sticker Pack (benchmark), created by the benchmark",
    price: { currencyCode: "USD", amount: 499n },
    stock: 100_000,
    active: true,
    createTime: timestampFromDate(new Date()),
    updateTime: timestampFromDate(new Date()),
  },
});
await measure("REST response: toJson(product, alwaysEmitImplicit) + JSON.stringify", () =>
  JSON.stringify(toJson(GetProductResponseSchema, res, { alwaysEmitImplicit: true })),
);
const bin = toBinary(GetProductResponseSchema, res);
await measure("protobuf toBinary + fromBinary GetProductResponse", () =>
  fromBinary(GetProductResponseSchema, toBinary(GetProductResponseSchema, res)),
);
await measure("crypto.randomUUID (request id per request)", () => crypto.randomUUID());
void bin;

const width = Math.max(...rows.map((r) => r.name.length));
console.log(`${"operation".padEnd(width)}  CPU µs/op  wall µs/op`);
for (const r of rows) {
  console.log(
    `${r.name.padEnd(width)}  ${r.cpuUs.toFixed(1).padStart(9)}  ${r.wallUs.toFixed(1).padStart(10)}`,
  );
}
