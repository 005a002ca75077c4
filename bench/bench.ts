/**
 * `npm run bench`: the benchmark of issue 7, against the real stack, with the
 * ceilings measured in the same run. See BENCHMARKS.md for the method and results.
 *
 * Scenarios (BENCH_SCENARIOS / --scenarios, comma-separated; default all, in order):
 *   http-ceiling    raw node:http server, fixed JSON              (ceiling of rest, connect)
 *   h2-ceiling      raw node:http2 server, gRPC-framed fixed reply
 *   grpcjs-ceiling  bare @grpc/grpc-js server, fixed reply        (ceiling of grpc, grpc-runtime)
 *   grpc-runtime    the runtime's createGrpcServer answering GetProduct from memory: the
 *                   runtime's own cost per call, without catalog's database work
 *   rest            GET /v1/products/{id} through the edge (anonymous: the edge's
 *                   micro-cache answers most of them, EDGE_CACHE_TTL_MS)
 *   rest-uncached   the same with `Cache-Control: no-cache`: every read through
 *                   edge → catalog → PostgreSQL
 *   connect         POST /shop.catalog.v1.CatalogService/GetProduct (Connect JSON) through the edge
 *   grpc            GetProduct straight to catalog's port (runtime's createGrpcClient)
 *   saga            PlaceOrder → CONFIRMED (REST through the edge, tok_visa), closed loop:
 *                   what --saga-concurrency clients placing one order after another get
 *   saga-rate       the same, open loop: orders placed at --saga-rate per second (500,
 *                   issue 4's target) whatever the stack's pace, each waited for; latency
 *                   from each order's scheduled start
 *   outbox          outbox relay publish rate and commit → published latency
 * A scenario's ceiling is added when it is not picked. Every scenario: warm-up, then a
 * bounded window at fixed concurrency, closed loop (saga-rate: open loop), exact percentiles.
 *
 * Options (flag or env): --seconds BENCH_SECONDS (10), --saga-seconds BENCH_SAGA_SECONDS
 * (30, or BENCH_SECONDS when that is set), --warmup BENCH_WARMUP (2 s; saga 3 s),
 * --concurrency BENCH_CONCURRENCY (64), --saga-concurrency BENCH_SAGA_CONCURRENCY (64),
 * --saga-rate BENCH_SAGA_RATE (500 orders/s, the saga-rate scenario's),
 * --saga-users BENCH_SAGA_USERS (16), --saga-products BENCH_SAGA_PRODUCTS (1: every order
 * buys the same product, a best-seller whose stock row every order locks; N: orders go
 * round robin over N products), --saga-stage-seconds BENCH_SAGA_STAGE_SECONDS (5: the
 * saga's stages are timed for the orders placed in the first 5 s of its window; 0: none;
 * the stage subscriptions cost ≈ 2 % of the machine while open),
 * --grpc-channels BENCH_GRPC_CHANNELS (4),
 * --outbox-events BENCH_OUTBOX_EVENTS (10000), --profile BENCH_PROFILE (1: every service
 * runs under --cpu-prof and the profiles are summarised per scenario), --node-options
 * BENCH_NODE_OPTIONS (extra NODE_OPTIONS for the services, e.g. --max-semi-space-size=16),
 * --code BENCH_CODE (bundle, the default since 2026-12-03: the services' esbuild bundles,
 * as the image runs them, built first; source: TypeScript through tsx, as `npm start`
 * runs them — 15–20 % slower in the saga), --verbose BENCH_VERBOSE.
 *
 * Prints a table and writes bench/results/<timestamp>.json and bench/results/latest.json.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { toBinary } from "@bufbuild/protobuf";
import {
  CatalogService,
  GetProductResponseSchema,
} from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { type CeilingKind, startCeiling } from "./lib/ceilings.js";
import { formatJson } from "./lib/format.js";
import { createHttpClient, type HttpClient } from "./lib/http.js";
import { type LoopResult, runLoop } from "./lib/loop.js";
import {
  type CpuUsage,
  loadAverage,
  machineInfo,
  rssMb,
  startCpuAccounting,
  type Tracked,
} from "./lib/machine.js";
import { createOptions } from "./lib/options.js";
import { runOutbox } from "./lib/outbox.js";
import { monotonicUs, type ProfileSummary, summarizeProfile } from "./lib/profile.js";
import { runSaga, sagaTarget } from "./lib/saga.js";
import { createUsers, ensureProduct, login } from "./lib/shop.js";
import { repoRoot, type Stack, startStack } from "./lib/stack.js";
import { fmtInt, fmtMs, type Percentiles } from "./lib/stats.js";

const ALL = [
  "http-ceiling",
  "h2-ceiling",
  "grpcjs-ceiling",
  "grpc-runtime",
  "rest",
  "rest-uncached",
  "connect",
  "grpc",
  "saga",
  "saga-rate",
  "outbox",
] as const;
type ScenarioName = (typeof ALL)[number];
const CEILING_OF: Partial<Record<ScenarioName, ScenarioName>> = {
  rest: "http-ceiling",
  "rest-uncached": "http-ceiling",
  connect: "http-ceiling",
  grpc: "grpcjs-ceiling",
  "grpc-runtime": "grpcjs-ceiling",
};

const opt = createOptions("BENCH");
const secondsSet = opt.raw("seconds") !== undefined;
const o = {
  seconds: opt.num("seconds", 10, 1),
  sagaSeconds: opt.num("saga-seconds", secondsSet ? opt.num("seconds", 10, 1) : 30, 1),
  warmup: opt.num("warmup", 2),
  sagaWarmup: opt.num("saga-warmup", 3),
  concurrency: opt.num("concurrency", 64, 1),
  sagaConcurrency: opt.num("saga-concurrency", 64, 1),
  sagaRate: opt.num("saga-rate", 500, 1),
  sagaUsers: opt.num("saga-users", 16, 1),
  sagaProducts: opt.num("saga-products", 1, 1),
  sagaStageSeconds: opt.num("saga-stage-seconds", 5),
  grpcChannels: opt.num("grpc-channels", 4, 1),
  outboxEvents: opt.num("outbox-events", 10_000, 1),
  outboxSingles: opt.num("outbox-singles", 200, 1),
  profile: opt.str("profile", "0") === "1",
  nodeOptions: opt.str("node-options", ""),
  code: opt.str("code", "bundle"),
  verbose: opt.str("verbose", "0") === "1",
};
const picked = (opt.raw("scenarios") ?? ALL.join(","))
  .split(",")
  .map((s) => s.trim())
  .flatMap((s) => (s === "ceilings" ? ["http-ceiling", "h2-ceiling", "grpcjs-ceiling"] : [s]));
if (o.code !== "source" && o.code !== "bundle") {
  process.stderr.write(`BENCH_CODE: must be source or bundle (got "${o.code}")\n`);
  process.exit(2);
}
for (const s of picked) {
  if (!(ALL as readonly string[]).includes(s)) {
    process.stderr.write(`BENCH_SCENARIOS: unknown scenario "${s}" (known: ${ALL.join(", ")})\n`);
    process.exit(2);
  }
}
const wanted = new Set<ScenarioName>(picked as ScenarioName[]);
for (const s of [...wanted]) {
  const c = CEILING_OF[s];
  if (c) wanted.add(c);
}
const scenarios = ALL.filter((s) => wanted.has(s));

interface ScenarioResult {
  name: ScenarioName;
  title: string;
  unit: string;
  concurrency: number;
  seconds: number;
  ops: number;
  errors: number;
  rate: number;
  latencyMs: Percentiles;
  errorSamples: string[];
  /** Open loop (saga-rate): the rate orders were placed at; concurrency is the peak in flight. */
  offeredRate?: number;
  ceiling?: string;
  ceilingRate?: number;
  ratio?: number;
  loadAverageBefore: [number, number, number];
  cpu: CpuUsage;
  /** CPU microseconds per operation, by process (cores ÷ rate): robust to a busy machine. */
  cpuUsPerOp: Record<string, number>;
  rssMb?: Record<string, number | undefined>;
  extra?: Record<string, unknown>;
  /** The scenario's time span on the CPU profiles' clock (microseconds, CLOCK_MONOTONIC). */
  window: { startUs: number; endUs: number };
}

const TITLES: Record<ScenarioName, string> = {
  "http-ceiling": "ceiling: raw node:http JSON",
  "h2-ceiling": "ceiling: raw node:http2 gRPC-framed",
  "grpcjs-ceiling": "ceiling: bare grpc-js",
  "grpc-runtime": "runtime grpc server, no DB (1 hop)",
  rest: "REST GET /v1/products/{id} via edge",
  "rest-uncached": "the same, read through (no-cache)",
  connect: "Connect JSON GetProduct via edge",
  grpc: "gRPC GetProduct → catalog (1 hop)",
  saga: "saga PlaceOrder → CONFIRMED",
  "saga-rate": "the same, orders at a fixed rate",
  outbox: "outbox relay publish",
};

function say(line: string) {
  process.stdout.write(`${line}\n`);
}

async function main() {
  const startedAt = new Date();
  const stamp = startedAt
    .toISOString()
    .replaceAll(":", "-")
    .replace(/\.\d+Z$/, "Z");
  const resultsDir = new URL("./results/", import.meta.url).pathname;
  mkdirSync(resultsDir, { recursive: true });
  const profileDir = join(resultsDir, `profiles-${stamp}`);
  const machine = machineInfo();
  say(
    `shopmesh bench — ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGb} GB, node ${machine.node}; load average ${loadAverage().join(" ")}`,
  );
  say(`scenarios: ${scenarios.join(", ")}`);

  // NODE_OPTIONS reach every service (the launcher passes its environment on).
  let nodeOptions = `${process.env["NODE_OPTIONS"] ?? ""} ${o.nodeOptions}`;
  if (o.profile) {
    mkdirSync(profileDir, { recursive: true });
    nodeOptions += ` --cpu-prof --cpu-prof-dir=${profileDir}`;
  }
  const env: Record<string, string> = {};
  if (nodeOptions.trim() !== "") env["NODE_OPTIONS"] = nodeOptions.trim();
  if (o.code === "bundle") {
    // The services as the image runs them: esbuild bundles, no tsx.
    say("building the service bundles (npm run build:service all)...");
    execFileSync(process.execPath, ["scripts/build-service.mjs", "all"], {
      cwd: repoRoot,
      stdio: o.verbose ? "inherit" : "ignore",
    });
    env["SERVICE_CODE"] = "bundle";
  }
  say(`starting the stack (npm start's launcher, services from ${o.code})...`);
  const stack = await startStack({
    env,
    log: (line) => {
      if (o.verbose || /error|fatal/i.test(line)) say(`  [stack] ${line}`);
    },
  });
  say(`stack ready in ${(stack.startMs / 1000).toFixed(1)} s: edge ${stack.edgeUrl}`);
  let stopping = false;
  const onSignal = () => {
    if (stopping) process.exit(130);
    stopping = true;
    say("interrupted: stopping the stack");
    void stack.stop().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const servicePids = new Map<number, string>();
  const tracked =
    (extra: Tracked[] = []) =>
    () => {
      const info = stack.info();
      const list: Tracked[] = [{ label: "client", pid: process.pid }, ...extra];
      for (const s of info.services) {
        servicePids.set(s.pid, s.service);
        list.push({ label: s.service, pid: s.pid });
      }
      if (info.postgres?.pid !== undefined)
        list.push({ label: "postgres", pid: info.postgres.pid, withChildren: true });
      if (info.nats?.pid !== undefined) list.push({ label: "nats", pid: info.nats.pid });
      return list;
    };
  const results: ScenarioResult[] = [];
  let failure: unknown;
  try {
    // Up to 256 connections: in the open loop every order in flight holds one for its
    // PlaceOrder, and a burst of them should not queue in the client.
    const http = createHttpClient(stack.edgeUrl, Math.max(o.concurrency, o.sagaConcurrency, 256));
    const fixture = await setUp(stack, http);
    say(
      `product ${fixture.productId} (${fixture.sku}, stock ${fixture.stock}); ${fixture.users.length} users`,
    );
    tracked()(); // learn the service pids now

    for (const name of scenarios) {
      await sleep(1_000);
      const loadBefore = loadAverage();
      say(`\n▶ ${TITLES[name]}  (load average ${loadBefore.join(" ")})`);
      const startUs = monotonicUs();
      const r = await runScenario(name, stack, http, fixture, tracked);
      const result: ScenarioResult = {
        name,
        title: TITLES[name],
        loadAverageBefore: loadBefore,
        ...r,
        cpuUsPerOp: Object.fromEntries(
          Object.entries(r.cpu.byLabel)
            .filter(([, cores]) => cores >= 0.03 && r.rate > 0)
            .map(([label, cores]) => [label, Math.round((cores / r.rate) * 1e6)]),
        ),
        window: { startUs, endUs: monotonicUs() },
      };
      const ceilingName = CEILING_OF[name];
      const ceiling = results.find((x) => x.name === ceilingName);
      if (ceiling !== undefined) {
        result.ceiling = ceiling.title;
        result.ceilingRate = ceiling.rate;
        result.ratio = result.rate / ceiling.rate;
      }
      if (name === "outbox" && r.extra) {
        result.ceiling = "raw JetStream publish (same process, same batches)";
        result.ceilingRate = r.extra["rawPublishPerSec"] as number;
        result.ratio = result.rate / result.ceilingRate;
      }
      results.push(result);
      say(`  ${summaryLine(result)}`);
    }
    http.close();
  } catch (err) {
    failure = err;
  } finally {
    say("\nstopping the stack...");
    await stack.stop();
  }
  if (failure !== undefined) throw failure;

  let profiles: Record<string, Record<string, ProfileSummary>> | undefined;
  if (o.profile) profiles = summarizeProfiles(profileDir, servicePids, results);

  const targets = evaluateTargets(results);
  printTable(results, targets);
  const report = {
    startedAt: startedAt.toISOString(),
    git: gitState(),
    finishedAt: new Date().toISOString(),
    machine,
    loadAverageAtEnd: loadAverage(),
    options: o,
    postgres: process.env["PG_URL"] ? "PG_URL" : "embedded",
    stackStartMs: Math.round(stack.startMs),
    scenarios: results,
    targets,
    ...(profiles ? { profiles, profileDir } : {}),
  };
  const file = join(resultsDir, `${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  copyFileSync(file, join(resultsDir, "latest.json"));
  formatJson([file, join(resultsDir, "latest.json")]);
  say(`\nwritten ${file} (and bench/results/latest.json)`);
}

/** The commit measured, and whether the code under services/, proto/ or gen/ differed from it. */
function gitState(): { commit: string; dirty: string[] } {
  const git = (...args: string[]) =>
    execFileSync("git", args, { cwd: new URL("../", import.meta.url).pathname, encoding: "utf8" });
  try {
    return {
      commit: git("rev-parse", "HEAD").trim(),
      dirty: git("status", "--porcelain", "services", "proto", "gen")
        .split("\n")
        .filter((l) => l.trim() !== ""),
    };
  } catch {
    return { commit: "unknown", dirty: [] };
  }
}

interface Fixture {
  productId: string;
  /** The saga's products: `productId` first, then the others of --saga-products. */
  sagaProductIds: string[];
  sku: string;
  stock: number;
  users: Awaited<ReturnType<typeof createUsers>>;
  restJson: string;
  grpcBase64: string;
}

async function setUp(stack: Stack, http: HttpClient): Promise<Fixture> {
  const admin = await login(http, stack.adminEmail, stack.adminPassword);
  const product = await ensureProduct(http, admin.accessToken, {
    sku: "BENCH-STICKER-PACK",
    name: "Sticker Pack (benchmark)",
    priceCents: 499,
    stock: 100_000,
  });
  const sagas = wanted.has("saga") || wanted.has("saga-rate");
  const users = sagas
    ? await createUsers(http, o.sagaUsers, `bench-${Date.now().toString(36)}`)
    : [];
  const sagaProductIds = [product.id];
  for (let i = 1; sagas && i < o.sagaProducts; i++) {
    const other = await ensureProduct(http, admin.accessToken, {
      sku: `BENCH-STICKER-PACK-${i}`,
      name: `Sticker Pack ${i} (benchmark)`,
      priceCents: 499,
      stock: 100_000,
    });
    sagaProductIds.push(other.id);
  }
  // The real answers, so that the ceilings send bodies of the same size.
  const rest = await http.request("GET", `/v1/products/${product.id}`);
  const grpc = createGrpcClient(CatalogService, `127.0.0.1:${stack.ports.catalog}`);
  const res = await grpc.getProduct({ productId: product.id });
  grpc.close();
  return {
    productId: product.id,
    sagaProductIds,
    sku: product.sku,
    stock: product.stock,
    users,
    restJson: rest.body.toString(),
    grpcBase64: Buffer.from(toBinary(GetProductResponseSchema, res)).toString("base64"),
  };
}

type ScenarioRun = Omit<
  ScenarioResult,
  "name" | "title" | "loadAverageBefore" | "window" | "cpuUsPerOp"
>;

async function runScenario(
  name: ScenarioName,
  stack: Stack,
  http: HttpClient,
  f: Fixture,
  tracked: (extra?: Tracked[]) => () => Tracked[],
): Promise<ScenarioRun> {
  const loopTimes = { warmupMs: o.warmup * 1000, durationMs: o.seconds * 1000 };
  const measured = async (
    extra: Tracked[],
    fn: () => Promise<LoopResult & { extra?: Record<string, unknown> }>,
    unit = "req/s",
  ): Promise<ScenarioRun> => {
    const cpuDone = startCpuAccounting(tracked(extra));
    const r = await fn();
    const cpu = cpuDone();
    return { unit, ...r, cpu };
  };

  const restOp =
    (client: HttpClient, path: string, headers?: Record<string, string>) => async () => {
      const res = await client.request("GET", path, headers ? { headers } : {});
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    };
  const connectBody = JSON.stringify({ productId: f.productId });
  const connectOp = (client: HttpClient) => async () => {
    const res = await client.request("POST", "/shop.catalog.v1.CatalogService/GetProduct", {
      headers: { "content-type": "application/json" },
      body: connectBody,
    });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  };
  const grpcLoop = async (address: string) => {
    // Separate subchannel pools: each client its own HTTP/2 connection.
    const clients = Array.from({ length: o.grpcChannels }, () =>
      createGrpcClient(CatalogService, address, {
        channelOptions: { "grpc.use_local_subchannel_pool": 1 },
      }),
    );
    try {
      return await runLoop({
        concurrency: o.concurrency,
        ...loopTimes,
        op: async (w) => {
          await clients[w % clients.length]?.getProduct({ productId: f.productId });
        },
      });
    } finally {
      for (const c of clients) c.close();
    }
  };
  const ceiling = async (kind: CeilingKind) => {
    const server = await startCeiling(kind, { json: f.restJson, grpcBase64: f.grpcBase64 });
    try {
      return await measured([{ label: "ceiling-server", pid: server.pid }], async () => {
        if (kind === "http") {
          const client = createHttpClient(`http://127.0.0.1:${server.port}`, o.concurrency);
          try {
            return await runLoop({
              concurrency: o.concurrency,
              ...loopTimes,
              op: restOp(client, `/v1/products/${f.productId}`),
            });
          } finally {
            client.close();
          }
        }
        return grpcLoop(`127.0.0.1:${server.port}`);
      });
    } finally {
      await server.stop();
    }
  };

  switch (name) {
    case "http-ceiling":
      return ceiling("http");
    case "h2-ceiling":
      return ceiling("h2grpc");
    case "grpcjs-ceiling":
      return ceiling("grpcjs");
    case "grpc-runtime":
      return ceiling("runtime");
    case "rest": {
      const r = await measured([], () =>
        runLoop({
          concurrency: o.concurrency,
          ...loopTimes,
          op: restOp(http, `/v1/products/${f.productId}`),
        }),
      );
      return { ...r, rssMb: rssOfServices(stack) };
    }
    case "rest-uncached": {
      const r = await measured([], () =>
        runLoop({
          concurrency: o.concurrency,
          ...loopTimes,
          op: restOp(http, `/v1/products/${f.productId}`, { "cache-control": "no-cache" }),
        }),
      );
      return { ...r, rssMb: rssOfServices(stack) };
    }
    case "connect": {
      const r = await measured([], () =>
        runLoop({ concurrency: o.concurrency, ...loopTimes, op: connectOp(http) }),
      );
      return { ...r, rssMb: rssOfServices(stack) };
    }
    case "grpc": {
      const r = await measured([], () => grpcLoop(`127.0.0.1:${stack.ports.catalog}`));
      return { ...r, rssMb: rssOfServices(stack) };
    }
    case "saga":
    case "saga-rate": {
      const r = await measured(
        [],
        () =>
          runSaga({
            http,
            ...sagaTarget(stack),
            users: f.users,
            productIds: f.sagaProductIds,
            concurrency: o.sagaConcurrency,
            ...(name === "saga-rate" ? { rate: o.sagaRate } : {}),
            warmupMs: o.sagaWarmup * 1000,
            durationMs: o.sagaSeconds * 1000,
            timeoutMs: 30_000,
            sample: 100,
            stageMs: o.sagaStageSeconds * 1000,
          }) as Promise<LoopResult & { extra: Record<string, unknown> }>,
        "orders/s",
      );
      // RSS at the end of the saga: the memory target is "at that load".
      return { ...r, rssMb: rssOfServices(stack) };
    }
    case "outbox": {
      const cpuDone = startCpuAccounting(tracked());
      const t = performance.now();
      const r = await runOutbox({
        pgAdminUrl: stack.pgAdminUrl,
        natsUrl: stack.natsUrl,
        events: o.outboxEvents,
        singles: o.outboxSingles,
      });
      return {
        unit: "events/s",
        concurrency: 1,
        seconds: Math.round(performance.now() - t) / 1000,
        ops: r.events,
        errors: 0,
        rate: r.relayPublishPerSec,
        latencyMs: r.singleLatencyMs,
        errorSamples: [],
        cpu: cpuDone(),
        extra: { ...r },
      };
    }
  }
}

function rssOfServices(stack: Stack): Record<string, number | undefined> {
  const out: Record<string, number | undefined> = {};
  const info = stack.info();
  for (const s of info.services) out[s.service] = rssMb(s.pid);
  if (info.nats?.pid !== undefined) out["nats-server"] = rssMb(info.nats.pid);
  return out;
}

function summaryLine(r: ScenarioResult): string {
  const l = r.latencyMs;
  const ratio = r.ratio === undefined ? "" : `  = ${(r.ratio * 100).toFixed(0)}% of ceiling`;
  const errors = r.errors > 0 ? `  errors ${r.errors} (${r.errorSamples.join(" | ")})` : "";
  const perSecond = r.extra?.["perSecond"] as number[] | undefined;
  const open =
    r.offeredRate === undefined
      ? ""
      : `  (offered ${fmtInt(r.offeredRate)}/s, at most ${fmtInt(r.concurrency)} in flight; confirmations per second of the window ${fmtInt(Math.min(...(perSecond ?? [0])))}–${fmtInt(Math.max(...(perSecond ?? [0])))})`;
  const cpu = Object.entries(r.cpu.byLabel)
    .filter(([, v]) => v >= 0.05)
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(", ");
  const perOp = Object.entries(r.cpuUsPerOp)
    .map(([k, v]) => `${k} ${fmtInt(v)}`)
    .join(", ");
  const stages = r.extra?.["stagesMs"] as Record<string, Percentiles> | undefined;
  const staged = stages?.["orderConfirmed"]?.count ?? 0;
  const stageLine = stages
    ? `\n  stages from the request, p50/p99 ms${staged > 0 ? ` (the NATS stages of the ${fmtInt(staged)} orders placed in the first ${o.sagaStageSeconds} s)` : ""}: ${Object.entries(
        stages,
      )
        .filter(([, v]) => v.count > 0)
        .map(([k, v]) => `${k} ${fmtMs(v.p50)}/${fmtMs(v.p99)}`)
        .join(", ")}`
    : "";
  const perOrderDb = r.extra?.["perOrderDb"] as
    | Record<
        string,
        { transactions: number; inserted: number; updated: number; backendCpuUs?: number }
      >
    | undefined;
  const dbLine = perOrderDb
    ? `\n  PostgreSQL per order (transactions / rows inserted / updated / backends' CPU µs): ${Object.entries(
        perOrderDb,
      )
        .map(
          ([k, v]) =>
            `${k} ${v.transactions}/${v.inserted}/${v.updated}/${v.backendCpuUs === undefined ? "–" : fmtInt(v.backendCpuUs)}`,
        )
        .join(", ")}`
    : "";
  const x = r.extra ?? {};
  const n = (k: string) => fmtInt(Number(x[k] ?? 0));
  const tx = x["singleTransactionMs"] as Percentiles | undefined;
  const outboxLine =
    r.name === "outbox"
      ? `\n  ${n("events")} events: raw JetStream ${n("rawPublishPerSec")}/s, enqueue ${n("enqueuePerSec")}/s, relay ${n("relayPublishPerSec")}/s, backlog drained in ${n("drainMs")} ms; single event commit→NATS p50/p99 ${fmtMs(r.latencyMs.p50)}/${fmtMs(r.latencyMs.p99)} ms, its transaction p50 ${fmtMs(tx?.p50 ?? 0)} ms`
      : "";
  return `${fmtInt(r.rate)} ${r.unit}  p50 ${fmtMs(l.p50)} ms  p90 ${fmtMs(l.p90)}  p99 ${fmtMs(l.p99)}${ratio}${open}${errors}\n  cpu (cores): machine ${r.cpu.machineCores.toFixed(2)}, other ${r.cpu.otherCores.toFixed(2)}; ${cpu}\n  cpu µs per ${r.unit.replace(/\/s$/, "").replace(/s$/, "")}: ${perOp}${stageLine}${dbLine}${outboxLine}`;
}

interface Target {
  source: string;
  what: string;
  met: boolean | undefined;
  measured: string;
}

function evaluateTargets(results: ScenarioResult[]): Target[] {
  const by = (n: ScenarioName) => results.find((r) => r.name === n);
  const out: Target[] = [];
  const rest = by("rest");
  const check = (
    source: string,
    what: string,
    r: ScenarioResult | undefined,
    ok: (r: ScenarioResult) => boolean,
    show: (r: ScenarioResult) => string,
  ) => out.push({ source, what, met: r ? ok(r) : undefined, measured: r ? show(r) : "not run" });
  const rateP99 = (r: ScenarioResult) =>
    `${fmtInt(r.rate)} ${r.unit}, p99 ${fmtMs(r.latencyMs.p99)} ms`;
  check(
    "issue 3",
    "REST read via edge ≥ 3,000 req/s, p99 < 50 ms @64",
    rest,
    (r) => r.rate >= 3000 && r.latencyMs.p99 < 50,
    rateP99,
  );
  check(
    "issue 3",
    "the same, every read through to catalog and PostgreSQL (no-cache)",
    by("rest-uncached"),
    (r) => r.rate >= 3000 && r.latencyMs.p99 < 50,
    rateP99,
  );
  check(
    "issue 7",
    "REST read via edge ≥ 5,000 req/s, p99 < 20 ms @64",
    rest,
    (r) => r.rate >= 5000 && r.latencyMs.p99 < 20,
    rateP99,
  );
  check(
    "issue 7",
    "internal gRPC hop ≥ 0.8 × bare grpc-js",
    by("grpc"),
    (r) => (r.ratio ?? 0) >= 0.8,
    (r) =>
      `${((r.ratio ?? 0) * 100).toFixed(0)}% (${fmtInt(r.rate)} vs ${fmtInt(r.ceilingRate ?? 0)} req/s)`,
  );
  check(
    "issue 7",
    "the same, runtime grpc server without the database (its own share)",
    by("grpc-runtime"),
    (r) => (r.ratio ?? 0) >= 0.8,
    (r) =>
      `${((r.ratio ?? 0) * 100).toFixed(0)}% (${fmtInt(r.rate)} vs ${fmtInt(r.ceilingRate ?? 0)} req/s)`,
  );
  const saga = by("saga");
  // A rate with a latency bound: measured by offering that rate (saga-rate, open loop).
  // Every order of the window must be confirmed (none cancelled, timed out or not started).
  check(
    "issue 4",
    "saga sustains ≥ 500 orders/s offered, every one CONFIRMED, p99 place→confirmed < 500 ms",
    by("saga-rate"),
    (r) => (r.offeredRate ?? 0) >= 500 && r.rate >= 500 && r.errors === 0 && r.latencyMs.p99 < 500,
    (r) =>
      `${fmtInt(r.offeredRate ?? 0)} offered: ${fmtInt(r.ops)} of ${fmtInt(r.ops + r.errors)} confirmed (${fmtInt(r.rate)} orders/s), p99 ${fmtMs(r.latencyMs.p99)} ms`,
  );
  check(
    "issue 7",
    "saga ≥ 1,000 orders/s, p99 place→confirmed < 250 ms",
    saga,
    (r) => r.rate >= 1000 && r.latencyMs.p99 < 250,
    rateP99,
  );
  check(
    "issue 7",
    "every service < 150 MB RSS at the saga load",
    saga,
    (r) => Object.entries(r.rssMb ?? {}).every(([k, v]) => k === "nats-server" || (v ?? 0) < 150),
    (r) =>
      `${Object.entries(r.rssMb ?? {})
        .filter(([k]) => k !== "nats-server")
        .map(([k, v]) => `${k} ${v ?? "?"}`)
        .join(", ")} MB`,
  );
  check(
    "issue 4",
    "outbox → published p50 < 20 ms",
    by("outbox"),
    (r) => r.latencyMs.p50 < 20,
    (r) => `p50 ${fmtMs(r.latencyMs.p50)} ms, p99 ${fmtMs(r.latencyMs.p99)} ms`,
  );
  return out;
}

function printTable(results: ScenarioResult[], targets: Target[]) {
  const rows = results.map((r) => [
    r.title,
    r.offeredRate === undefined ? String(r.concurrency) : "open",
    `${fmtInt(r.rate)} ${r.unit}`,
    fmtMs(r.latencyMs.p50),
    fmtMs(r.latencyMs.p90),
    fmtMs(r.latencyMs.p99),
    String(r.errors),
    r.ratio === undefined ? "—" : `${(r.ratio * 100).toFixed(0)}%`,
    r.loadAverageBefore[0].toFixed(2),
    `${r.cpu.machineCores.toFixed(2)}/${r.cpu.otherCores.toFixed(2)}`,
  ]);
  const head = [
    "scenario",
    "conc",
    "rate",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "err",
    "vs ceiling",
    "load1",
    "cpu/other",
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(" | ")} |`;
  say("");
  say(line(head));
  say(
    `|${widths.map((w, i) => (i === 0 ? `-${"-".repeat(w)}-` : `${"-".repeat(w + 1)}:`)).join("|")}|`,
  );
  for (const r of rows) say(line(r));
  say(
    "\ncpu/other: cores busy machine-wide during the window / of which by processes outside the stack and the client",
  );
  const saga = results.find((r) => r.name === "saga");
  if (saga?.rssMb) {
    say(
      `RSS at the end of the saga (MB): ${Object.entries(saga.rssMb)
        .map(([k, v]) => `${k} ${v ?? "?"}`)
        .join(", ")}`,
    );
  }
  say("\ntargets:");
  for (const t of targets) {
    const mark = t.met === undefined ? "–" : t.met ? "MET" : "NOT MET";
    say(`  [${mark.padEnd(7)}] ${t.source}: ${t.what} — ${t.measured}`);
  }
}

/** The services whose profiles matter in each scenario. */
const PROFILED: Partial<Record<ScenarioName, string[]>> = {
  rest: ["edge", "catalog"],
  "rest-uncached": ["edge", "catalog"],
  connect: ["edge", "catalog"],
  grpc: ["catalog"],
  saga: ["edge", "identity", "catalog", "orders", "payments", "notifications"],
  "saga-rate": ["edge", "identity", "catalog", "orders", "payments", "notifications"],
};

/** Per scenario, per service: where the CPU went during that scenario only. */
function summarizeProfiles(
  dir: string,
  pids: Map<number, string>,
  results: ScenarioResult[],
): Record<string, Record<string, ProfileSummary>> {
  const files = new Map<string, string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))) {
    // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main thread
    // (thread 1 is tsx's esbuild worker).
    const [, , , pid, thread] = file.split(".");
    const service = pids.get(Number(pid));
    if (service !== undefined && thread === "0") files.set(service, join(dir, file));
  }
  const out: Record<string, Record<string, ProfileSummary>> = {};
  for (const r of results) {
    for (const service of PROFILED[r.name] ?? []) {
      const file = files.get(service);
      if (file === undefined) continue;
      const s = summarizeProfile(file, 15, r.window);
      const scenario = out[r.name] ?? {};
      scenario[service] = s;
      out[r.name] = scenario;
      say(
        `\nprofile: ${r.name} / ${service} — not idle ${s.busyMs} ms of ${s.wallMs} ms (${((s.busyMs / Math.max(1, s.wallMs)) * 100).toFixed(0)}%; CPU itself is in the cpu line above)`,
      );
      say(
        `  by origin: ${s.byOrigin
          .slice(0, 8)
          .map((x) => `${x.name} ${x.pct}%`)
          .join(", ")}`,
      );
      say(
        `  self: ${s.selfTop
          .slice(0, 6)
          .map((x) => `${x.name} ${x.pct}%`)
          .join(", ")}`,
      );
      for (const x of s.inclusiveTop.slice(0, 14))
        say(`  ${x.pct.toFixed(1).padStart(5)}%  ${x.name}`);
    }
  }
  return out;
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
