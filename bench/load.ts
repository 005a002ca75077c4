/**
 * `npm run load`: a soak with a realistic mix of user traffic through the edge's
 * REST surface, bounded in time, with live progress and a summary; exits non-zero
 * when the error rate is above the threshold.
 *
 * The mix (weights): browse 10 (GET /v1/products, sometimes with a search or the next
 * page), product view 5 (GET /v1/products/{id}), login 1 (POST /v1/auth/login),
 * order 1 (POST /v1/orders, mostly tok_visa, some tok_chargeDeclined), cancel 0.2
 * (POST /v1/orders/{id}:cancel of one of the user's own orders). Closed loop:
 * LOAD_CONCURRENCY workers, each operation for a random idle user of LOAD_USERS (a
 * user does one thing at a time, so concurrency is capped at the number of users).
 *
 * Options (flag or env): --seconds LOAD_SECONDS (60), --concurrency LOAD_CONCURRENCY (32),
 * --users LOAD_USERS (50), --think-ms LOAD_THINK_MS (0: pause after each operation),
 * --max-error-rate LOAD_MAX_ERROR_RATE (0.01), --mix LOAD_MIX (weights to change, e.g.
 * "login=0"), --url LOAD_URL (an edge already running;
 * default: start the stack as `npm run bench` does; with LOAD_URL, ADMIN_EMAIL and
 * ADMIN_PASSWORD let it create its products, else it orders the demo products).
 * Writes bench/results/load-<timestamp>.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { formatJson } from "./lib/format.js";
import { createHttpClient, type HttpClient, HttpError } from "./lib/http.js";
import { loadAverage, machineInfo } from "./lib/machine.js";
import { createOptions } from "./lib/options.js";
import { type BenchUser, createUsers, ensureProduct, login } from "./lib/shop.js";
import { type Stack, startStack } from "./lib/stack.js";
import { fmtInt, fmtMs, type Percentiles, Recorder } from "./lib/stats.js";

const opt = createOptions("LOAD");
const o = {
  seconds: opt.num("seconds", 60, 1),
  concurrency: opt.num("concurrency", 32, 1),
  users: opt.num("users", 50, 1),
  thinkMs: opt.num("think-ms", 0),
  maxErrorRate: opt.num("max-error-rate", 0.01),
  url: opt.raw("url"),
};

const OPS = ["browse", "view", "login", "order", "cancel"] as const;
type Op = (typeof OPS)[number];
const WEIGHTS: Record<Op, number> = { browse: 10, view: 5, login: 1, order: 1, cancel: 0.2 };
// LOAD_MIX / --mix, e.g. "login=0" or "browse=10,view=5,login=1,order=1,cancel=0.2".
for (const part of (opt.raw("mix") ?? "").split(",").filter((x) => x.trim() !== "")) {
  const [name, value] = part.split("=").map((x) => x.trim());
  const weight = Number(value);
  if (!OPS.includes(name as Op) || !Number.isFinite(weight) || weight < 0) {
    process.stderr.write(`LOAD_MIX: bad entry "${part}" (operations: ${OPS.join(", ")})\n`);
    process.exit(2);
  }
  WEIGHTS[name as Op] = weight;
}
const SEARCHES = ["mug", "steel", "wireless", "notebook", "charger", "cotton", "pen", "load"];

interface UserState extends BenchUser {
  /** Orders this user placed with tok_visa and has not cancelled yet. */
  orders: string[];
  busy: boolean;
}

function say(line: string) {
  process.stdout.write(`${line}\n`);
}

function pickOp(): Op {
  const total = OPS.reduce((s, op) => s + WEIGHTS[op], 0);
  let r = Math.random() * total;
  for (const op of OPS) {
    r -= WEIGHTS[op];
    if (r < 0) return op;
  }
  return "browse";
}

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;

async function main() {
  const machine = machineInfo();
  say(
    `shopmesh load — ${machine.cpus} × ${machine.cpuModel}, node ${machine.node}; load average ${loadAverage().join(" ")}`,
  );
  let stack: Stack | undefined;
  let baseUrl = o.url;
  let adminEmail = process.env["ADMIN_EMAIL"];
  let adminPassword = process.env["ADMIN_PASSWORD"];
  if (baseUrl === undefined) {
    say("starting the stack (npm start's launcher)...");
    stack = await startStack({
      log: (l) => (/error|fatal/i.test(l) ? say(`  [stack] ${l}`) : undefined),
    });
    baseUrl = stack.edgeUrl;
    adminEmail = stack.adminEmail;
    adminPassword = stack.adminPassword;
    say(`stack ready in ${(stack.startMs / 1000).toFixed(1)} s: edge ${baseUrl}`);
    const s = stack;
    process.once("SIGINT", () => {
      say("interrupted: stopping the stack");
      void s.stop().finally(() => process.exit(130));
    });
  }
  const http = createHttpClient(baseUrl, o.concurrency + 4);
  let exitCode = 0;
  try {
    exitCode = await run(http, adminEmail, adminPassword);
  } finally {
    http.close();
    if (stack) {
      say("stopping the stack...");
      await stack.stop();
    }
  }
  process.exit(exitCode);
}

async function run(
  http: HttpClient,
  adminEmail: string | undefined,
  adminPassword: string | undefined,
): Promise<number> {
  // Products to order: our own, with stock for any soak, when we can be admin.
  let orderable: string[];
  if (adminEmail && adminPassword) {
    const admin = await login(http, adminEmail, adminPassword);
    orderable = [];
    for (let i = 1; i <= 8; i++) {
      const p = await ensureProduct(http, admin.accessToken, {
        sku: `LOAD-ITEM-${i}`,
        name: `Load test item ${i}`,
        priceCents: 100 * i + 99,
        stock: 1_000_000,
      });
      orderable.push(p.id);
    }
  } else {
    say(
      "no ADMIN_EMAIL/ADMIN_PASSWORD: ordering the demo products (orders fail once stock runs out)",
    );
    orderable = [];
  }
  const catalog: string[] = [];
  for (let token = ""; ; ) {
    const page = await http.json<{
      products: { id: string; stock: number }[];
      nextPageToken: string;
    }>(
      "GET",
      `/v1/products?page_size=100${token ? `&page_token=${encodeURIComponent(token)}` : ""}`,
    );
    for (const p of page.products) {
      catalog.push(p.id);
      if (!(adminEmail && adminPassword) && p.stock >= 100) orderable.push(p.id);
    }
    token = page.nextPageToken;
    if (!token) break;
  }
  say(
    `${catalog.length} products in the catalog, ${orderable.length} to order; registering ${o.users} users...`,
  );
  const tag = `load-${Date.now().toString(36)}`;
  const users: UserState[] = (await createUsers(http, o.users, tag)).map((u) => ({
    ...u,
    orders: [],
    busy: false,
  }));

  const all = new Recorder();
  const byOp = Object.fromEntries(OPS.map((op) => [op, new Recorder()])) as Record<Op, Recorder>;
  const errorsByOp = Object.fromEntries(OPS.map((op) => [op, 0])) as Record<Op, number>;
  const errorSamples = new Map<string, number>();
  let second = new Recorder();
  let secondErrors = 0;
  let secondCount: Record<Op, number> = Object.fromEntries(OPS.map((op) => [op, 0])) as Record<
    Op,
    number
  >;
  const timeline: { t: number; rate: number; errors: number; p99: number }[] = [];
  const auth = (u: UserState) => ({ authorization: `Bearer ${u.token}` });
  const nextPage = new Map<string, string>();

  const perform = async (op: Op, u: UserState) => {
    switch (op) {
      case "browse": {
        const q = Math.random() < 0.2 ? `&query=${pick(SEARCHES)}` : "";
        const more = q === "" && Math.random() < 0.3 ? nextPage.get(u.userId) : undefined;
        const page = await http.json<{ nextPageToken: string }>(
          "GET",
          `/v1/products?page_size=20${q}${more ? `&page_token=${encodeURIComponent(more)}` : ""}`,
        );
        if (q === "") nextPage.set(u.userId, page.nextPageToken);
        return;
      }
      case "view":
        await http.json("GET", `/v1/products/${pick(catalog)}`);
        return;
      case "login":
        u.token = (await login(http, u.email, u.password)).accessToken;
        return;
      case "order": {
        const declined = Math.random() < 0.05;
        const order = await http.json<{ id: string }>(
          "POST",
          "/v1/orders",
          {
            items: [{ productId: pick(orderable), quantity: 1 + Math.floor(Math.random() * 3) }],
            paymentToken: declined ? "tok_chargeDeclined" : "tok_visa",
          },
          auth(u),
        );
        if (!declined) u.orders.push(order.id);
        return;
      }
      case "cancel": {
        const id = u.orders.shift();
        if (id === undefined) return perform("order", u); // nothing to cancel yet
        await http.json("POST", `/v1/orders/${id}:cancel`, { reason: "changed my mind" }, auth(u));
        return;
      }
    }
  };

  const started = performance.now();
  const end = started + o.seconds * 1000;
  const ticker = setInterval(() => {
    const t = Math.round((performance.now() - started) / 1000);
    const p = second.percentiles();
    const n = p.count + secondErrors;
    timeline.push({ t, rate: n, errors: secondErrors, p99: p.p99 });
    const mix = OPS.map((op) => `${op} ${secondCount[op]}`).join(" ");
    say(
      `t=${String(t).padStart(3)}s  ${fmtInt(n).padStart(6)} req/s  errors ${secondErrors} (${((secondErrors / Math.max(1, n)) * 100).toFixed(2)}%)  p99 ${fmtMs(p.p99)} ms  [${mix}]`,
    );
    second = new Recorder();
    secondErrors = 0;
    secondCount = Object.fromEntries(OPS.map((op) => [op, 0])) as Record<Op, number>;
  }, 1000);

  // A user does one thing at a time (concurrent logins of one account would trip
  // identity's per-account throttle, which counts attempts before checking them).
  const concurrency = Math.min(o.concurrency, users.length);
  if (concurrency < o.concurrency)
    say(`concurrency capped at ${concurrency}: one operation per user at a time`);
  const worker = async () => {
    while (performance.now() < end) {
      const u = pick(users.filter((x) => !x.busy));
      u.busy = true;
      const op = pickOp();
      const t0 = performance.now();
      try {
        await perform(op, u);
        const ms = performance.now() - t0;
        all.record(ms);
        byOp[op].record(ms);
        second.record(ms);
      } catch (err) {
        errorsByOp[op]++;
        secondErrors++;
        const key = `${op}: ${err instanceof HttpError ? `HTTP ${err.status} ${err.body.slice(0, 120)}` : String((err as Error)?.message ?? err)}`;
        errorSamples.set(key, (errorSamples.get(key) ?? 0) + 1);
      } finally {
        u.busy = false;
        secondCount[op]++;
      }
      if (o.thinkMs > 0) await sleep(o.thinkMs);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  clearInterval(ticker);
  const seconds = (performance.now() - started) / 1000;

  const errors = OPS.reduce((s, op) => s + errorsByOp[op], 0);
  const total = all.count + errors;
  const errorRate = errors / Math.max(1, total);
  const summary: Record<
    string,
    { count: number; rate: number; errors: number; latencyMs: Percentiles }
  > = {};
  say(
    `\nsummary: ${fmtInt(total)} requests in ${seconds.toFixed(1)} s at concurrency ${concurrency}, ${o.users} users`,
  );
  say("| operation | count | req/s | errors | p50 ms | p90 ms | p99 ms |");
  say("|-----------|------:|------:|-------:|-------:|-------:|-------:|");
  for (const op of OPS) {
    const p = byOp[op].percentiles();
    summary[op] = { count: p.count, rate: p.count / seconds, errors: errorsByOp[op], latencyMs: p };
    say(
      `| ${op} | ${fmtInt(p.count)} | ${fmtInt(p.count / seconds)} | ${errorsByOp[op]} | ${fmtMs(p.p50)} | ${fmtMs(p.p90)} | ${fmtMs(p.p99)} |`,
    );
  }
  const p = all.percentiles();
  say(
    `| all | ${fmtInt(p.count)} | ${fmtInt(p.count / seconds)} | ${errors} | ${fmtMs(p.p50)} | ${fmtMs(p.p90)} | ${fmtMs(p.p99)} |`,
  );
  if (errorSamples.size > 0) {
    say("\nerrors:");
    for (const [k, n] of [...errorSamples].sort((a, b) => b[1] - a[1]).slice(0, 10))
      say(`  ${n} × ${k}`);
  }
  const ok = errorRate <= o.maxErrorRate;
  say(
    `\nerror rate ${(errorRate * 100).toFixed(3)}% (threshold ${(o.maxErrorRate * 100).toFixed(2)}%): ${ok ? "OK" : "FAILED"}`,
  );

  const resultsDir = new URL("./results/", import.meta.url).pathname;
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date()
    .toISOString()
    .replaceAll(":", "-")
    .replace(/\.\d+Z$/, "Z");
  const file = join(resultsDir, `load-${stamp}.json`);
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        finishedAt: new Date().toISOString(),
        machine: machineInfo(),
        loadAverageAtEnd: loadAverage(),
        options: o,
        weights: WEIGHTS,
        seconds,
        total,
        errors,
        errorRate,
        latencyMs: p,
        byOperation: summary,
        errorSamples: Object.fromEntries(errorSamples),
        timeline,
      },
      null,
      2,
    )}\n`,
  );
  formatJson([file]);
  say(`written ${file}`);
  return ok ? 0 : 1;
}

main().catch((err: unknown) => {
  process.stderr.write(
    `load failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
