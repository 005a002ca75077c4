/**
 * `npm run bench:tracing`: what tracing costs. The same stack is run with tracing off
 * (no OTLP endpoint: the API's no-op tracer) and on (every span sampled,
 * OTEL_TRACES_SAMPLER=always_on, exported over OTLP/HTTP to a sink in this process that
 * reads and acknowledges every export, as a collector would), alternating off/on for
 * `--rounds` rounds so that a drift in the machine's load hits both alike. Each run
 * measures REST GET /v1/products/{id} (edge → catalog → PostgreSQL: four spans a
 * request) and the saga (PlaceOrder → CONFIRMED: some forty spans an order).
 *
 * Options (flag or env): --seconds BENCH_SECONDS (10), --saga-seconds
 * BENCH_SAGA_SECONDS (15), --warmup BENCH_WARMUP (2), --concurrency BENCH_CONCURRENCY
 * (64), --saga-concurrency BENCH_SAGA_CONCURRENCY (32), --rounds BENCH_ROUNDS (2).
 * Writes bench/results/tracing-<timestamp>.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { formatJson } from "./lib/format.js";
import { createHttpClient, type HttpClient } from "./lib/http.js";
import { type LoopResult, runLoop } from "./lib/loop.js";
import { loadAverage, machineInfo } from "./lib/machine.js";
import { createOptions } from "./lib/options.js";
import { runSaga, sagaTarget } from "./lib/saga.js";
import { sagaFixture } from "./lib/shop.js";
import { repoRoot, startStack } from "./lib/stack.js";
import { fmtInt, fmtMs } from "./lib/stats.js";

const opt = createOptions("BENCH");
const o = {
  seconds: opt.num("seconds", 10, 1),
  sagaSeconds: opt.num("saga-seconds", 15, 1),
  warmup: opt.num("warmup", 2),
  concurrency: opt.num("concurrency", 64, 1),
  sagaConcurrency: opt.num("saga-concurrency", 32, 1),
  rounds: opt.num("rounds", 2, 1),
};
const say = (line: string) => process.stdout.write(`${line}\n`);

/** An OTLP/HTTP endpoint that takes every export (read in full) and answers 200. */
async function startSink() {
  let requests = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on("data", (c: Buffer) => {
      bytes += c.length;
    });
    req.on("end", () => {
      requests++;
      res.setHeader("content-type", "application/x-protobuf");
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    counts: () => ({ requests, bytes }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface RunResult {
  mode: "off" | "on";
  round: number;
  rest: LoopResult;
  saga: LoopResult;
  exported: { requests: number; bytes: number };
  loadAverageBefore: number[];
}

async function runOnce(mode: "off" | "on", round: number, sinkUrl: string, sink: () => object) {
  const env: Record<string, string> =
    mode === "on"
      ? {
          OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl,
          OTEL_TRACES_SAMPLER: "always_on",
        }
      : {};
  const loadAverageBefore = loadAverage();
  const stack = await startStack({ env });
  const http: HttpClient = createHttpClient(stack.edgeUrl, o.concurrency);
  try {
    const { product, users } = await sagaFixture(
      http,
      { email: stack.adminEmail, password: stack.adminPassword },
      16,
      `trace-${mode}-${round}`,
    );
    const before = JSON.stringify(sink());
    const rest = await runLoop({
      concurrency: o.concurrency,
      warmupMs: o.warmup * 1000,
      durationMs: o.seconds * 1000,
      op: async () => {
        const res = await http.request("GET", `/v1/products/${product.id}`);
        if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      },
    });
    const saga = await runSaga({
      http,
      ...sagaTarget(stack),
      users,
      productIds: [product.id],
      concurrency: o.sagaConcurrency,
      warmupMs: o.warmup * 1000,
      durationMs: o.sagaSeconds * 1000,
      timeoutMs: 30_000,
      sample: 0,
    });
    // Give the batch processors a moment to flush what the window produced.
    await new Promise((r) => setTimeout(r, 1_000));
    const exported = sink() as { requests: number; bytes: number };
    const was = JSON.parse(before) as { requests: number; bytes: number };
    return {
      mode,
      round,
      rest,
      saga,
      exported: { requests: exported.requests - was.requests, bytes: exported.bytes - was.bytes },
      loadAverageBefore,
    } satisfies RunResult;
  } finally {
    http.close();
    await stack.stop();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

const machine = machineInfo();
say(
  `shopmesh bench:tracing — ${machine.cpus} × ${machine.cpuModel}, node ${machine.node}; load ${loadAverage().join(" ")}`,
);
const sink = await startSink();
const results: RunResult[] = [];
try {
  for (let round = 1; round <= o.rounds; round++) {
    for (const mode of ["off", "on"] as const) {
      say(`round ${round}: tracing ${mode}...`);
      const r = await runOnce(mode, round, sink.url, sink.counts);
      results.push(r);
      say(
        `  rest ${fmtInt(r.rest.rate)} req/s p99 ${fmtMs(r.rest.latencyMs.p99)} (${r.rest.errors} errors); ` +
          `saga ${r.saga.rate.toFixed(1)} orders/s p99 ${fmtMs(r.saga.latencyMs.p99)} (${r.saga.errors} errors); ` +
          `exported ${r.exported.requests} requests, ${(r.exported.bytes / 1e6).toFixed(1)} MB`,
      );
    }
  }
} finally {
  await sink.close();
}

const rate = (mode: "off" | "on", what: "rest" | "saga") =>
  median(results.filter((r) => r.mode === mode).map((r) => r[what].rate));
const summary = {
  restOff: rate("off", "rest"),
  restOn: rate("on", "rest"),
  sagaOff: rate("off", "saga"),
  sagaOn: rate("on", "saga"),
};
const overhead = (off: number, on: number) => ((off - on) / off) * 100;
say("");
say("| scenario | tracing off | tracing on (always sample, exporting) | overhead |");
say("| --- | ---: | ---: | ---: |");
say(
  `| REST GET /v1/products/{id} | ${fmtInt(summary.restOff)} req/s | ${fmtInt(summary.restOn)} req/s | ${overhead(summary.restOff, summary.restOn).toFixed(1)} % |`,
);
say(
  `| saga (PlaceOrder → CONFIRMED) | ${summary.sagaOff.toFixed(1)} orders/s | ${summary.sagaOn.toFixed(1)} orders/s | ${overhead(summary.sagaOff, summary.sagaOn).toFixed(1)} % |`,
);
const dir = join(repoRoot, "bench", "results");
mkdirSync(dir, { recursive: true });
const file = join(dir, `tracing-${new Date().toISOString().replaceAll(":", "-")}.json`);
writeFileSync(
  file,
  `${JSON.stringify({ machine, options: o, summary, results }, (_k, v) => (typeof v === "bigint" ? String(v) : v), 2)}\n`,
);
formatJson([file]);
say(`\nwritten ${file}`);
process.exit(0);
