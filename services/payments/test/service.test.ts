/**
 * PaymentService over real gRPC against a real database: who may see which payment,
 * filters, newest-first paging with opaque tokens, and the error codes.
 */

import { randomUUID } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Payment, PaymentStatus } from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { Code } from "@shopmesh/runtime/errors.js";
import type { CallOptions } from "@shopmesh/runtime/grpc-client.js";
import { rpcError } from "@shopmesh/runtime/testing.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PaymentRow, payments } from "../src/db/schema.js";
import { type Payments, startPayments } from "./harness.js";

let p: Payments;
const alice = randomUUID();
const bob = randomUUID();
let asAlice: CallOptions;
let asBob: CallOptions;
let asAdmin: CallOptions;
/** Alice's payments, newest first. */
let alices: PaymentRow[];
let bobs: PaymentRow[];

const insertPayment = async (values: Partial<typeof payments.$inferInsert>) => {
  const [row] = await p.database.db
    .insert(payments)
    .values({
      orderId: randomUUID(),
      userId: alice,
      amount: 1_500n,
      currencyCode: "USD",
      ...values,
    })
    .returning();
  if (row === undefined) throw new Error("insert returned no row");
  return row;
};

beforeAll(async () => {
  p = await startPayments();
  asAlice = p.bearer(await p.keys.sign(alice, ["customer"]));
  asBob = p.bearer(await p.keys.sign(bob, ["customer"]));
  asAdmin = p.bearer(await p.keys.sign(randomUUID(), ["admin"]));
  // Five of Alice's, two sharing a timestamp (the id breaks the tie), and two of Bob's.
  const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 12, 0, s));
  alices = [];
  for (const [s, status] of [
    [1, "CAPTURED"],
    [2, "FAILED"],
    [3, "REFUNDED"],
    [3, "CAPTURED"],
    [4, "PENDING"],
  ] as const) {
    alices.push(await insertPayment({ status, createdAt: at(s), updatedAt: at(s) }));
  }
  alices.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
  bobs = [
    await insertPayment({ userId: bob, createdAt: at(2) }),
    await insertPayment({ userId: bob, createdAt: at(5) }),
  ];
});
afterAll(async () => {
  await p?.stop();
});

describe("GetPayment", () => {
  it("returns the owner's payment, fully mapped", async () => {
    const row = await insertPayment({
      status: "FAILED",
      amount: 9_999n,
      currencyCode: "EUR",
      failureReason: "card declined",
      providerReference: "ch_abc",
      attempts: 1,
    });
    const { payment } = await p.client.getPayment({ paymentId: row.id }, asAlice);
    expect(payment).toMatchObject({
      id: row.id,
      orderId: row.orderId,
      userId: alice,
      amount: { currencyCode: "EUR", amount: 9_999n },
      status: PaymentStatus.FAILED,
      failureReason: "card declined",
      providerReference: "ch_abc",
      attempts: 1,
    });
    expect(payment?.createTime && timestampDate(payment.createTime)).toEqual(row.createdAt);
    expect(payment?.updateTime && timestampDate(payment.updateTime)).toEqual(row.updatedAt);
  });

  it("maps every status and leaves unset references empty", async () => {
    const statuses = await Promise.all(
      alices.map(async (row) => {
        const { payment } = await p.client.getPayment({ paymentId: row.id }, asAlice);
        expect(payment?.failureReason).toBe("");
        expect(payment?.providerReference).toBe("");
        return [row.status, payment?.status];
      }),
    );
    expect(Object.fromEntries(statuses)).toEqual({
      PENDING: PaymentStatus.PENDING,
      CAPTURED: PaymentStatus.CAPTURED,
      FAILED: PaymentStatus.FAILED,
      REFUNDED: PaymentStatus.REFUNDED,
    });
  });

  it("hides another user's payment as NOT_FOUND, and shows it to an admin", async () => {
    const id = alices[0]?.id as string;
    const err = await rpcError(p.client.getPayment({ paymentId: id }, asBob));
    expect(err.code).toBe(Code.NOT_FOUND);
    // The same answer as for a payment that does not exist: nothing to probe.
    const missing = await rpcError(p.client.getPayment({ paymentId: randomUUID() }, asBob));
    expect(missing.code).toBe(Code.NOT_FOUND);
    const { payment } = await p.client.getPayment({ paymentId: id }, asAdmin);
    expect(payment?.userId).toBe(alice);
  });

  it("refuses callers without a valid token, and ids that are not UUIDs", async () => {
    const id = alices[0]?.id as string;
    expect((await rpcError(p.client.getPayment({ paymentId: id }))).code).toBe(
      Code.UNAUTHENTICATED,
    );
    const forged = p.bearer("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln");
    expect((await rpcError(p.client.getPayment({ paymentId: id }, forged))).code).toBe(
      Code.UNAUTHENTICATED,
    );
    const bad = await rpcError(p.client.getPayment({ paymentId: "42" }, asAlice));
    expect(bad.code).toBe(Code.INVALID_ARGUMENT);
    expect(bad.message).toContain("payment_id");
  });
});

/** Every page of a listing, following next_page_token. */
async function listAll(
  req: { pageSize?: number; orderId?: string; userId?: string },
  opts: CallOptions,
) {
  const all: Payment[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const res = await p.client.listPayments({ ...req, pageToken }, opts);
    if (req.pageSize) expect(res.payments.length).toBeLessThanOrEqual(req.pageSize);
    all.push(...res.payments);
    pageToken = res.nextPageToken;
    pages++;
    expect(pages).toBeLessThan(50);
  } while (pageToken !== "");
  return { ids: all.map((x) => x.id), pages };
}

describe("ListPayments", () => {
  it("shows a customer only their own payments, newest first, page by page", async () => {
    const { ids, pages } = await listAll({ pageSize: 2 }, asAlice);
    // The fixtures, plus any payment of Alice's that an earlier test added (newer).
    expect(ids.slice(-alices.length)).toEqual(alices.map((r) => r.id));
    expect(ids.every((id) => !bobs.some((b) => b.id === id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(pages).toBe(Math.ceil(ids.length / 2));
    const bobsOwn = await listAll({}, asBob);
    expect(bobsOwn.ids).toEqual([bobs[1]?.id, bobs[0]?.id]);
  });

  it("gives a customer nothing when they ask for another user's payments", async () => {
    const res = await p.client.listPayments({ userId: alice }, asBob);
    expect(res.payments).toEqual([]);
    const byOrder = await p.client.listPayments({ orderId: alices[0]?.orderId }, asBob);
    expect(byOrder.payments).toEqual([]);
  });

  it("shows an admin everyone's payments, filtered by user or order", async () => {
    const everyone = await listAll({ pageSize: 3 }, asAdmin);
    for (const row of [...alices, ...bobs]) expect(everyone.ids).toContain(row.id);
    const bobsOnly = await listAll({ userId: bob }, asAdmin);
    expect(bobsOnly.ids).toEqual([bobs[1]?.id, bobs[0]?.id]);
    const target = alices[2] as PaymentRow;
    const byOrder = await p.client.listPayments({ orderId: target.orderId }, asAdmin);
    expect(byOrder.payments.map((x) => x.id)).toEqual([target.id]);
    expect(byOrder.nextPageToken).toBe("");
  });

  it("refuses page tokens that are malformed or were issued for another listing", async () => {
    const first = await p.client.listPayments({ pageSize: 1 }, asAlice);
    expect(first.nextPageToken).not.toBe("");
    const garbage = await rpcError(p.client.listPayments({ pageToken: "not a token!" }, asAlice));
    expect(garbage.code).toBe(Code.INVALID_ARGUMENT);
    // Alice's token, presented by Bob, or with a filter: not a way into other listings.
    for (const [req, opts] of [
      [{ pageToken: first.nextPageToken }, asBob],
      [{ pageToken: first.nextPageToken, orderId: randomUUID() }, asAlice],
    ] as const) {
      const err = await rpcError(p.client.listPayments(req, opts));
      expect(err.code).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toContain("page_token");
    }
  });

  it("checks its arguments and requires a token", async () => {
    expect((await rpcError(p.client.listPayments({}))).code).toBe(Code.UNAUTHENTICATED);
    const big = await rpcError(p.client.listPayments({ pageSize: 101 }, asAdmin));
    expect(big.code).toBe(Code.INVALID_ARGUMENT);
    const badUser = await rpcError(p.client.listPayments({ userId: "alice" }, asAdmin));
    expect(badUser.code).toBe(Code.INVALID_ARGUMENT);
    const defaults = await p.client.listPayments({}, asAdmin);
    expect(defaults.payments.length).toBeLessThanOrEqual(20);
  });
});
