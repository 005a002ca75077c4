/**
 * `npm run bench:compare -- --base <git ref>`: the saga of `--base` against this checkout,
 * on the same machine, in alternating runs — base, this, this, base, base, … — so that a machine
 * whose speed drifts (this VM's moved by ±20 % within minutes, and by ×3.5 between a
 * morning and an afternoon) weighs on both sides alike. Each run is `npm run bench --
 * --scenarios=saga` in its own checkout: the base in a temporary git worktree (`npm ci`
 * there first), this one here, each with its bundles built from its own code.
 *
 *   --base REF          what to compare against (required), e.g. HEAD~1, main, a58efc4
 *   --runs N            runs per side (default 3)
 *   --saga-seconds S    measured window per run (default 20)
 *   --saga-products N   passed on to the bench (default: the bench's)
 *
 * "This checkout" is built at each of its runs: do not edit it while a comparison runs (commit
 * first, or the runs measure whatever the files were at the time).
 *
 * Each side runs its own bench code. A base from before the saga's stage subscriptions were
 * limited to the window's first 5 s (2026-12-04, eighth session: `--saga-stage-seconds` in
 * bench/bench.ts) pays ≈ 100 µs of client and nats-server CPU per order more, ≈ 2 % of the
 * machine: read its orders/s with that in mind.
 *
 * Prints, per side, the median orders/s and p99 and the median CPU per order of every
 * process group, and of PostgreSQL's backends per service database ("postgres orders", …;
 * a base older than that measurement shows 0 there). The services a change did not touch are the control: if their CPU per
 * order moved as much as the changed ones', the difference is the machine's. The runs'
 * own result files stay in each checkout's bench/results/; this checkout's committed
 * bench/results/latest.json is put back as it was.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

interface SagaRun {
  rate: number;
  p99: number;
  cpu: Record<string, number>;
}

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i] ?? "";
  const [key, inline] = arg.replace(/^--/, "").split("=", 2);
  if (!arg.startsWith("--") || key === undefined) usage(`unexpected argument ${arg}`);
  args.set(key, inline ?? process.argv[++i] ?? "");
}
const base = args.get("base");
if (base === undefined || base === "") usage("--base is required");
const runs = positive("runs", 3);
const sagaSeconds = positive("saga-seconds", 20);
const products = args.get("saga-products");

function usage(problem: string): never {
  process.stderr.write(
    `bench:compare: ${problem}\nusage: npm run bench:compare -- --base <ref> [--runs 3] [--saga-seconds 20] [--saga-products N]\n`,
  );
  process.exit(2);
}

function positive(name: string, fallback: number): number {
  const raw = args.get(name);
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n <= 0) usage(`--${name} must be a positive whole number`);
  return n;
}

const here = process.cwd();
const git = (...a: string[]) => execFileSync("git", a, { cwd: here, encoding: "utf8" }).trim();
const baseCommit = git("rev-parse", "--verify", `${base}^{commit}`);
const hereCommit = git("rev-parse", "HEAD");
const dirty = git("status", "--porcelain", "--untracked-files=no") !== "";

const latest = join(here, "bench/results/latest.json");
const latestBefore = existsSync(latest) ? readFileSync(latest) : undefined;
const worktree = mkdtempSync(join(tmpdir(), "shopmesh-compare-"));

/** Runs `npm run bench` (saga only) in `dir`; resolves with its saga result. */
function sagaIn(dir: string): Promise<SagaRun> {
  const benchArgs = [
    "run",
    "-s",
    "bench",
    "--",
    "--scenarios=saga",
    `--saga-seconds=${sagaSeconds}`,
  ];
  if (products !== undefined) benchArgs.push(`--saga-products=${products}`);
  return new Promise((resolve, reject) => {
    const child = spawn("npm", benchArgs, { cwd: dir, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const file = /written (\S+\.json)/.exec(out)?.[1];
      if (code !== 0 || file === undefined) {
        reject(new Error(`bench in ${dir} failed (exit ${code}):\n${out.slice(-2_000)}`));
        return;
      }
      const result = JSON.parse(readFileSync(file, "utf8")) as {
        scenarios: {
          name: string;
          rate: number;
          latencyMs: { p99: number };
          cpuUsPerOp?: Record<string, number>;
          extra?: { perOrderDb?: Record<string, { backendCpuUs?: number }> };
        }[];
      };
      const saga = result.scenarios.find((s) => s.name === "saga");
      if (saga === undefined) {
        reject(new Error(`no saga result in ${file}`));
        return;
      }
      // PostgreSQL's backends per service database, where the bench measured them (a base
      // older than that has none): "postgres <db>".
      const cpu = { ...saga.cpuUsPerOp };
      for (const [db, stats] of Object.entries(saga.extra?.perOrderDb ?? {})) {
        if (stats.backendCpuUs !== undefined) cpu[`postgres ${db}`] = stats.backendCpuUs;
      }
      resolve({ rate: saga.rate, p99: saga.latencyMs.p99, cpu });
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const change = (from: number, to: number) =>
  from === 0
    ? ""
    : `${to >= from ? "+" : "−"}${Math.abs(Math.round((100 * (to - from)) / from))} %`;

try {
  console.log(
    `base ${baseCommit.slice(0, 7)} (${base}) against this checkout ${hereCommit.slice(0, 7)}${dirty ? " + uncommitted changes" : ""}`,
  );
  console.log(`preparing the base in ${worktree} (git worktree, npm ci)...`);
  git("worktree", "add", "--detach", worktree, baseCommit);
  execFileSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: worktree, stdio: "ignore" });

  const results: { base: SagaRun[]; here: SagaRun[] } = { base: [], here: [] };
  for (let i = 1; i <= runs; i++) {
    // Which side goes first alternates too: a run may warm or tire the machine for the next.
    const order = i % 2 === 1 ? (["base", "here"] as const) : (["here", "base"] as const);
    for (const side of order) {
      const run = await sagaIn(side === "base" ? worktree : here);
      results[side].push(run);
      console.log(
        `run ${i} ${side === "base" ? "base" : "this"}: ${fmt(run.rate)} orders/s, p99 ${fmt(run.p99)} ms`,
      );
    }
  }

  const rows: [string, number, number][] = [
    ["orders/s", median(results.base.map((r) => r.rate)), median(results.here.map((r) => r.rate))],
    ["p99 ms", median(results.base.map((r) => r.p99)), median(results.here.map((r) => r.p99))],
  ];
  const groups = [
    ...new Set([...results.base, ...results.here].flatMap((r) => Object.keys(r.cpu))),
  ];
  for (const g of groups) {
    rows.push([
      `cpu µs/order ${g}`,
      median(results.base.map((r) => r.cpu[g] ?? 0)),
      median(results.here.map((r) => r.cpu[g] ?? 0)),
    ]);
  }
  console.log(`\nmedians of ${runs} runs each (${sagaSeconds} s of saga per run):\n`);
  console.log(`| | base ${baseCommit.slice(0, 7)} | this | change |\n|---|--:|--:|--:|`);
  for (const [name, b, h] of rows)
    console.log(`| ${name} | ${fmt(b)} | ${fmt(h)} | ${change(b, h)} |`);
} finally {
  if (latestBefore !== undefined) writeFileSync(latest, latestBefore);
  try {
    git("worktree", "remove", "--force", worktree);
  } catch {
    rmSync(worktree, { recursive: true, force: true });
    git("worktree", "prune");
  }
}
