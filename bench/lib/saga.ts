/**
 * The saga scenario: PlaceOrder through the edge (REST POST /v1/orders, tok_visa)
 * and the wait for the order to be CONFIRMED, closed loop at fixed concurrency or open
 * loop at a fixed rate (`rate`: issue 4's target is a rate with a latency bound).
 *
 * CONFIRMED is timestamped by a plain NATS subscription to the OrderConfirmed and
 * OrderCancelled subjects: orders publishes OrderConfirmed through its outbox in the
 * transaction that confirms the order, so the event reaches NATS within the relay's
 * latency of the commit (measured by the outbox scenario), without polling load on
 * the stack. OrderPlaced and PaymentSucceeded are timestamped the same way, which splits
 * the latency into its stages — for the orders placed in the first `stageMs` of the
 * window only: those two subscriptions cost the client and nats-server ≈ 100 µs of CPU
 * per order (≈ 2 % of the 2-core machine, measured 2026-12-04), which the rest of the
 * window does without. A sample of orders is read back with GetOrder afterwards to check
 * the status and take the server-side place→confirmed time from the order's history.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { connect } from "@nats-io/transport-node";
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
  OrderPlacedSchema,
} from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { PaymentSucceededSchema } from "@shopmesh/gen/shop/payments/v1/events_pb.js";
import postgres from "postgres";
import type { HttpClient } from "./http.js";
import { HttpError } from "./http.js";
import { type LoopResult, runLoop, runOpenLoop } from "./loop.js";
import { cpuMsOf } from "./machine.js";
import type { BenchUser } from "./shop.js";
import { type Percentiles, percentilesOf, Recorder } from "./stats.js";

export interface SagaOptions {
  http: HttpClient;
  /** Superuser URL and the services' database prefix: transactions per order, per database. */
  pgAdminUrl: string;
  dbPrefix: string;
  natsUrl: string;
  users: BenchUser[];
  /** Orders go round robin over these (one product: every order locks its stock row). */
  productIds: string[];
  concurrency: number;
  /**
   * Open loop instead: orders placed at this rate per second whatever the stack's pace
   * (loop.ts); `concurrency` is then unused. Every order of the window is waited for.
   */
  rate?: number;
  warmupMs: number;
  durationMs: number;
  timeoutMs: number;
  /** Orders read back with GetOrder afterwards. */
  sample: number;
  /**
   * Stages are timestamped for the orders placed in this first part of the window (5 s by
   * default; 0: none). Their subscriptions close when the last of those orders settles.
   */
  stageMs?: number;
}

export interface SagaResult extends LoopResult {
  extra: {
    /** PlaceOrder round trip alone (the HTTP response, PENDING_PAYMENT). */
    placeMs: Percentiles;
    /**
     * Stages, each from the PlaceOrder request: response received; OrderPlaced,
     * PaymentSucceeded and OrderConfirmed seen on NATS.
     */
    stagesMs: Record<
      "placeResponse" | "orderPlaced" | "paymentSucceeded" | "orderConfirmed",
      Percentiles
    >;
    /** Confirmations per second of the measured window, second by second. */
    perSecond: number[];
    cancelled: number;
    timedOut: number;
    /** From GetOrder on a sample: history CONFIRMED − PENDING_PAYMENT change times. */
    serverSidePlaceToConfirmedMs: Percentiles;
    sampleChecked: number;
    sampleNotConfirmed: number;
    /** Orders placed during the whole scenario (warm-up and the tail included). */
    placedTotal: number;
    /**
     * PostgreSQL work per order placed, per service database, over the whole scenario
     * (pg_stat_database deltas ÷ placedTotal): transactions, rows inserted/updated/fetched.
     */
    perOrderDb: Record<
      string,
      {
        transactions: number;
        inserted: number;
        updated: number;
        fetched: number;
        /**
         * CPU of the database's backends per order (µs), from /proc: PostgreSQL's cost per
         * service. Absent when PostgreSQL runs on another machine.
         */
        backendCpuUs?: number;
      }
    >;
  };
}

interface Outcome {
  status: "CONFIRMED" | "CANCELLED";
  at: number;
}

type DbStats = Map<
  string,
  {
    xact: number;
    ins: number;
    upd: number;
    fetched: number;
    /** CPU ms used so far by each backend connected to the database (local PostgreSQL only). */
    backendsMs: Map<number, number>;
  }
>;

async function dbStats(adminUrl: string, prefix: string): Promise<DbStats> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<
      { datname: string; xact: string; ins: string; upd: string; fetched: string }[]
    >`select datname, xact_commit + xact_rollback as xact, tup_inserted as ins,
        tup_updated as upd, tup_fetched as fetched
      from pg_stat_database where datname like ${`${prefix}%`}`;
    const backends = await sql<{ pid: number; datname: string }[]>`
      select pid, datname from pg_stat_activity where datname like ${`${prefix}%`}`;
    const stats: DbStats = new Map(
      rows.map((r) => [
        r.datname,
        {
          xact: Number(r.xact),
          ins: Number(r.ins),
          upd: Number(r.upd),
          fetched: Number(r.fetched),
          backendsMs: new Map(),
        },
      ]),
    );
    for (const b of backends) {
      const ms = cpuMsOf(b.pid); // undefined when PostgreSQL runs on another machine
      if (ms !== undefined) stats.get(b.datname)?.backendsMs.set(b.pid, ms);
    }
    return new Map([...stats].map(([name, v]) => [name.slice(prefix.length), v]));
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export async function runSaga(o: SagaOptions): Promise<SagaResult> {
  const statsBefore = await dbStats(o.pgAdminUrl, o.dbPrefix);
  const nc = await connect({ servers: o.natsUrl, name: "bench-saga" });
  const waiting = new Map<string, (outcome: Outcome | undefined) => void>();
  const early = new Map<string, Outcome>();
  const settle = (orderId: string, outcome: Outcome) => {
    const w = waiting.get(orderId);
    if (w) {
      waiting.delete(orderId);
      w(outcome);
    } else {
      early.set(orderId, outcome);
    }
  };
  nc.subscribe("shop.orders.order_confirmed", {
    callback: (_err, msg) => {
      const at = performance.now();
      settle(fromBinary(OrderConfirmedSchema, msg.data).orderId, { status: "CONFIRMED", at });
    },
  });
  nc.subscribe("shop.orders.order_cancelled", {
    callback: (_err, msg) => {
      const at = performance.now();
      settle(fromBinary(OrderCancelledSchema, msg.data).orderId, { status: "CANCELLED", at });
    },
  });
  // Stage timestamps by order id, while the stage subscriptions are open.
  const placedAt = new Map<string, number>();
  const paidAt = new Map<string, number>();
  const stageMs = o.stageMs ?? 5_000;
  const stageSubscriptions =
    stageMs <= 0
      ? []
      : [
          nc.subscribe("shop.orders.order_placed", {
            callback: (_err, msg) => {
              placedAt.set(fromBinary(OrderPlacedSchema, msg.data).orderId, performance.now());
            },
          }),
          nc.subscribe("shop.payments.payment_succeeded", {
            callback: (_err, msg) => {
              paidAt.set(fromBinary(PaymentSucceededSchema, msg.data).orderId, performance.now());
            },
          }),
        ];
  await nc.flush();

  // At the end of the window nothing more is counted: stop waiting for confirmations.
  let closed = false;
  const closeWindow = () => {
    closed = true;
    for (const [id, w] of waiting) {
      waiting.delete(id);
      w(undefined);
    }
  };
  const outcomeOf = (orderId: string) =>
    new Promise<Outcome | undefined>((resolve) => {
      if (closed) return resolve(undefined);
      const e = early.get(orderId);
      if (e) {
        early.delete(orderId);
        resolve(e);
        return;
      }
      const timer = setTimeout(() => {
        waiting.delete(orderId);
        resolve(undefined);
      }, o.timeoutMs);
      waiting.set(orderId, (outcome) => {
        clearTimeout(timer);
        resolve(outcome);
      });
    });

  const place = new Recorder();
  const stages = {
    orderPlaced: new Recorder(),
    paymentSucceeded: new Recorder(),
    orderConfirmed: new Recorder(),
  };
  const windowStart = performance.now() + o.warmupMs;
  const windowEnd = windowStart + o.durationMs;
  // The orders whose stages are recorded: placed in [windowStart, stageEnd). The stage
  // subscriptions close once the time is past and every such order has settled, so that
  // none of them loses a stage (which would drop the slow ones from the percentiles).
  const stageEnd = windowStart + Math.max(0, stageMs);
  let stagePending = 0;
  const closeStagesWhenDone = () => {
    if (stagePending > 0 || performance.now() < stageEnd) return;
    for (const sub of stageSubscriptions.splice(0)) sub.unsubscribe();
  };
  const stageCloser = setTimeout(closeStagesWhenDone, stageEnd - performance.now() + 1);
  const perSecond = new Array<number>(Math.ceil(o.durationMs / 1000)).fill(0);
  const confirmed: { orderId: string; user: BenchUser }[] = [];
  let cancelled = 0;
  let timedOut = 0;
  let seq = 0;
  let placedTotal = 0;

  /** One order: PlaceOrder, then its outcome; `staged`: its stages are recorded. */
  async function placeAndWait(t0: number, staged: boolean) {
    const n = seq++;
    const user = o.users[n % o.users.length] as BenchUser;
    const productId = o.productIds[n % o.productIds.length] as string;
    const res = await o.http.request("POST", "/v1/orders", {
      headers: { "content-type": "application/json", authorization: `Bearer ${user.token}` },
      body: JSON.stringify({
        items: [{ productId, quantity: 1 }],
        paymentToken: "tok_visa",
      }),
    });
    const t1 = performance.now();
    if (res.status !== 200) {
      throw new HttpError(res.status, res.body.toString(), "PlaceOrder");
    }
    const orderId = (JSON.parse(res.body.toString()) as { id: string }).id;
    placedTotal++;
    if (t0 >= windowStart) place.record(t1 - t0);
    const outcome = await outcomeOf(orderId);
    if (outcome === undefined) {
      if (closed) throw new Error("window over");
      timedOut++;
      throw new Error(`order not confirmed within ${o.timeoutMs} ms`);
    }
    if (outcome.status === "CANCELLED") {
      cancelled++;
      throw new Error("order cancelled");
    }
    const p = placedAt.get(orderId);
    const q = paidAt.get(orderId);
    placedAt.delete(orderId);
    paidAt.delete(orderId);
    if (staged && p !== undefined && q !== undefined) {
      stages.orderPlaced.record(p - t0);
      stages.paymentSucceeded.record(q - t0);
      stages.orderConfirmed.record(outcome.at - t0);
    }
    if (outcome.at >= windowStart && outcome.at <= windowEnd) {
      const s = Math.floor((outcome.at - windowStart) / 1000);
      perSecond[s] = (perSecond[s] ?? 0) + 1;
      confirmed.push({ orderId, user });
    }
  }

  /** One order from `t0` (its start: now, or its scheduled time in the open loop). */
  const op = async (t0: number) => {
    // Counted from before the request, so the stage subscriptions stay open for it.
    const staged = stageSubscriptions.length > 0 && t0 >= windowStart && t0 < stageEnd;
    if (staged) stagePending++;
    try {
      await placeAndWait(t0, staged);
    } finally {
      if (staged) {
        stagePending--;
        closeStagesWhenDone();
      }
    }
  };
  const times = { warmupMs: o.warmupMs, durationMs: o.durationMs };
  let loop: LoopResult;
  if (o.rate === undefined) {
    // Closed loop: what completes after the window is not counted, so stop waiting then.
    const closer = setTimeout(closeWindow, windowEnd - performance.now() + 100);
    loop = await runLoop({
      concurrency: o.concurrency,
      ...times,
      op: () => op(performance.now()),
    });
    clearTimeout(closer);
  } else {
    // Open loop: every order of the window is waited for (or times out).
    loop = await runOpenLoop({ rate: o.rate, ...times, maxInFlight: o.rate * 10, op });
  }
  clearTimeout(stageCloser);
  await nc.drain();
  // Let the last events settle and the statistics collector flush (about once a second).
  await new Promise((r) => setTimeout(r, 2_000));
  const statsAfter = await dbStats(o.pgAdminUrl, o.dbPrefix);
  const perOrderDb: SagaResult["extra"]["perOrderDb"] = {};
  const per = (n: number) => Math.round((n / Math.max(1, placedTotal)) * 10) / 10;
  for (const [db, after] of statsAfter) {
    const before = statsBefore.get(db);
    // Backends that lived through the scenario, and those it opened (counted from zero).
    let backendMs = 0;
    for (const [pid, ms] of after.backendsMs) backendMs += ms - (before?.backendsMs.get(pid) ?? 0);
    perOrderDb[db] = {
      transactions: per(after.xact - (before?.xact ?? 0)),
      inserted: per(after.ins - (before?.ins ?? 0)),
      updated: per(after.upd - (before?.upd ?? 0)),
      fetched: per(after.fetched - (before?.fetched ?? 0)),
      ...(after.backendsMs.size > 0
        ? { backendCpuUs: Math.round((backendMs * 1000) / Math.max(1, placedTotal)) }
        : {}),
    };
  }

  // Read a sample back: really CONFIRMED, and the server's own place→confirmed time.
  const serverSide: number[] = [];
  let notConfirmed = 0;
  const sample = confirmed
    .map((c) => ({ c, r: Math.random() }))
    .sort((a, b) => a.r - b.r)
    .slice(0, o.sample)
    .map((x) => x.c);
  const check = async ({ orderId, user }: (typeof sample)[number]) => {
    const order = await o.http.json<{
      status: string;
      history: { status: string; changeTime: string }[];
    }>("GET", `/v1/orders/${orderId}`, undefined, { authorization: `Bearer ${user.token}` });
    const placed = order.history.find((h) => h.status === "ORDER_STATUS_PENDING_PAYMENT");
    const done = order.history.find((h) => h.status === "ORDER_STATUS_CONFIRMED");
    if (order.status !== "ORDER_STATUS_CONFIRMED" || placed === undefined || done === undefined) {
      notConfirmed++;
      return;
    }
    serverSide.push(Date.parse(done.changeTime) - Date.parse(placed.changeTime));
  };
  for (let i = 0; i < sample.length; i += 8) await Promise.all(sample.slice(i, i + 8).map(check));

  return {
    ...loop,
    extra: {
      placeMs: place.percentiles(),
      stagesMs: {
        placeResponse: place.percentiles(),
        orderPlaced: stages.orderPlaced.percentiles(),
        paymentSucceeded: stages.paymentSucceeded.percentiles(),
        orderConfirmed: stages.orderConfirmed.percentiles(),
      },
      perSecond,
      cancelled,
      timedOut,
      serverSidePlaceToConfirmedMs: percentilesOf(serverSide),
      sampleChecked: sample.length,
      sampleNotConfirmed: notConfirmed,
      placedTotal,
      perOrderDb,
    },
  };
}

/** The parts of SagaOptions that come from the running stack. */
export function sagaTarget(stack: { pgAdminUrl: string; dbPrefix: string; natsUrl: string }) {
  return { pgAdminUrl: stack.pgAdminUrl, dbPrefix: stack.dbPrefix, natsUrl: stack.natsUrl };
}
