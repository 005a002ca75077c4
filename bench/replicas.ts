/**
 * `npm run bench:replicas`: saga orders/s with 1 and with 2 replicas of orders and
 * payments (REPLICAS=orders=2,payments=2), each on a fresh real stack (the launcher,
 * PostgreSQL, its own nats-server), same load: PlaceOrder through the edge at fixed
 * concurrency until CONFIRMED (bench/lib/saga.ts). Records the CPU each process group
 * used per order, so a flat result can say what it is bound by.
 *
 *   BENCH_REPLICAS_SECONDS   measured window per run (default 20)
 *   BENCH_REPLICAS_WARMUP    warm-up seconds (default 5)
 *   BENCH_REPLICAS_CONCURRENCY  orders in flight (default 32)
 *   BENCH_REPLICAS_USERS     users placing orders (default 16)
 *
 * Prints a table and writes bench/results/replicas-<timestamp>.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { formatJson } from "./lib/format.js";
import { createHttpClient } from "./lib/http.js";
import { loadAverage, machineInfo, startCpuAccounting, type Tracked } from "./lib/machine.js";
import { runSaga, sagaTarget } from "./lib/saga.js";
import { sagaFixture } from "./lib/shop.js";
import { type Stack, startStack } from "./lib/stack.js";

const num = (name: string, fallback: number) => {
  const raw = process.env[name];
  const n = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number`);
  return n;
};
const seconds = num("BENCH_REPLICAS_SECONDS", 20);
const warmup = num("BENCH_REPLICAS_WARMUP", 5);
const concurrency = num("BENCH_REPLICAS_CONCURRENCY", 32);
const userCount = num("BENCH_REPLICAS_USERS", 16);

const CONFIGS = [
  { name: "1 × orders, 1 × payments", replicas: "" },
  { name: "2 × orders, 2 × payments", replicas: "orders=2,payments=2" },
];

/** The processes whose CPU is accounted: each service (its replicas summed), PostgreSQL, NATS. */
function tracked(stack: Stack): Tracked[] {
  const info = stack.info();
  const out: Tracked[] = info.services.map((s) => ({ label: s.service, pid: s.pid }));
  if (info.postgres?.pid !== undefined) {
    // The embedded server's backends are its children.
    out.push({ label: "postgres", pid: info.postgres.pid, withChildren: true });
  }
  if (info.nats?.pid !== undefined) out.push({ label: "nats", pid: info.nats.pid });
  return out;
}

async function run(config: (typeof CONFIGS)[number]) {
  const stack = await startStack({ env: { REPLICAS: config.replicas } });
  try {
    const http = createHttpClient(stack.edgeUrl, concurrency);
    const { product, users } = await sagaFixture(
      http,
      { email: stack.adminEmail, password: stack.adminPassword },
      userCount,
      "rep",
    );
    const loadBefore = loadAverage();
    const cpuDone = startCpuAccounting(() => tracked(stack));
    const t0 = performance.now();
    const r = await runSaga({
      http,
      ...sagaTarget(stack),
      users,
      productIds: [product.id],
      concurrency,
      warmupMs: warmup * 1000,
      durationMs: seconds * 1000,
      timeoutMs: 30_000,
      sample: 50,
    });
    const cpu = cpuDone();
    const wallS = (performance.now() - t0) / 1000;
    return {
      name: config.name,
      replicas: config.replicas || "1 each",
      processes: stack.info().services.length,
      loadAverageBefore: loadBefore,
      ordersPerSecond: r.rate,
      errors: r.errors,
      latencyMs: r.latencyMs,
      placedTotal: r.extra.placedTotal,
      cpu,
      wallSeconds: wallS,
    };
  } finally {
    await stack.stop();
  }
}

const machine = machineInfo();
console.log(
  `bench:replicas — ${machine.cpus} × ${machine.cpuModel}, node ${machine.node}; ${concurrency} in flight, ${warmup} s warm-up, ${seconds} s measured`,
);
const results = [];
for (const config of CONFIGS) {
  console.log(`\n${config.name}: starting the stack ...`);
  const r = await run(config);
  results.push(r);
  console.log(
    `${r.name}: ${r.ordersPerSecond.toFixed(1)} orders/s, p50 ${r.latencyMs.p50.toFixed(0)} ms, p99 ${r.latencyMs.p99.toFixed(0)} ms place→confirmed, ${r.errors} errors (load average before ${r.loadAverageBefore[0].toFixed(2)})`,
  );
  console.log(`  CPU: ${JSON.stringify(r.cpu)}`);
}
const dir = new URL("./results/", import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
const file = `${dir}replicas-${new Date().toISOString().replaceAll(":", "-").slice(0, 19)}.json`;
writeFileSync(
  file,
  `${JSON.stringify({ machine, concurrency, seconds, warmup, results }, null, 2)}\n`,
);
formatJson([file]);
console.log(`\nwritten ${file}`);
