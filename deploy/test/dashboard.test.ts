/**
 * The Grafana dashboard shipped with the chart (helm/shopmesh/dashboards/shopmesh.json):
 * a well-formed dashboard model, and every PromQL query names only metrics and labels
 * that the services really export, as read from a real /metrics scrape of the runtime's
 * registry (the one every service serves on its admin port).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startAdminServer } from "@shopmesh/runtime/admin-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";
import { registry } from "@shopmesh/runtime/metrics.js";
import { type MetricFamily, scrapeMetrics } from "@shopmesh/runtime/metrics-testing.js";
import { beforeAll, describe, expect, it } from "vitest";

const DASHBOARD = fileURLToPath(
  new URL("../../helm/shopmesh/dashboards/shopmesh.json", import.meta.url),
);

interface Target {
  refId: string;
  expr: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown }[] };
}

// Grafana's variable syntax, not a template literal.
const DATASOURCE = ["$", "{datasource}"].join("");
const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;

/** What the services export: metric family → its label names. */
type Exported = Map<string, Set<string>>;

const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
]);

/** The metric names and label names a PromQL expression uses. */
function promqlNames(expr: string): { metrics: Set<string>; labels: Set<string> } {
  const labels = new Set<string>();
  let e = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  e = e.replace(/\{([^}]*)\}/g, (_, inner: string) => {
    for (const m of inner.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
      labels.add(m[1] as string);
    }
    return " ";
  });
  e = e.replace(
    /\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g,
    (_, inner: string) => {
      for (const l of inner.split(",")) if (l.trim() !== "") labels.add(l.trim());
      return " ";
    },
  );
  e = e.replace(/\[[^\]]*\]/g, " ").replace(/\$\{[^}]*\}|\$\w+/g, " ");
  const metrics = new Set<string>();
  for (const m of e.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const before = e[(m.index ?? 0) - 1] ?? " ";
    if (/[0-9.]/.test(before)) continue; // the exponent of a number
    const after = e.slice((m.index ?? 0) + m[0].length).trimStart();
    if (after.startsWith("(") || KEYWORDS.has(m[0])) continue; // a function or an operator
    metrics.add(m[0]);
  }
  return { metrics, labels };
}

/** The exported family of a series name (`x_bucket` → `x` for a histogram), if any. */
function familyOf(name: string, exported: Exported, types: Map<string, string>) {
  if (exported.has(name)) return name;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    const base = name.slice(0, -suffix.length);
    if (name.endsWith(suffix) && types.get(base) === "histogram") return base;
  }
  return undefined;
}

/** Every problem of a dashboard's queries against `exported`: unknown metrics and labels. */
function queryProblems(d: Dashboard, exported: Exported, types: Map<string, string>) {
  const problems: string[] = [];
  for (const panel of d.panels) {
    for (const t of panel.targets ?? []) {
      const { metrics, labels } = promqlNames(t.expr);
      if (metrics.size === 0) problems.push(`${panel.title}/${t.refId}: no metric in "${t.expr}"`);
      const known = new Set<string>(["le"]);
      for (const m of metrics) {
        const family = familyOf(m, exported, types);
        if (family === undefined) problems.push(`${panel.title}/${t.refId}: no metric ${m}`);
        else for (const l of exported.get(family) ?? []) known.add(l);
      }
      for (const l of labels) {
        if (!known.has(l)) problems.push(`${panel.title}/${t.refId}: no label ${l}`);
      }
    }
  }
  return problems;
}

let exported: Exported;
let types: Map<string, string>;

beforeAll(async () => {
  const admin = await startAdminServer({
    port: 0,
    host: "127.0.0.1",
    service: "dashboard-test",
    logger: createLogger("dashboard-test", "silent"),
  });
  try {
    const scrape = await scrapeMetrics(`http://127.0.0.1:${admin.port}/metrics`);
    // Labelled metrics with no sample yet still have their HELP/TYPE; their label
    // names come from the registry (every series also carries the `service` label).
    const labelNames = new Map(
      registry
        .getMetricsAsArray()
        .map((m) => [m.name, (m as { labelNames?: string[] }).labelNames]),
    );
    exported = new Map();
    types = new Map();
    for (const [name, f] of scrape.families as Map<string, MetricFamily>) {
      const fromSamples = f.samples.flatMap((s) => Object.keys(s.labels));
      exported.set(name, new Set(["service", ...(labelNames.get(name) ?? []), ...fromSamples]));
      types.set(name, f.type);
    }
  } finally {
    await admin.close();
  }
});

describe("the shopmesh dashboard", () => {
  it("is a dashboard model Grafana loads: uid, schema version, panels on a 24-column grid", () => {
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dashboard.title).toBe("shopmesh");
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(["row", "timeseries", "stat", "gauge", "table"]).toContain(p.type);
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      expect(p.gridPos.h, p.title).toBeGreaterThan(0);
      if (p.type === "row") continue;
      expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: DATASOURCE });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      const refIds = (p.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
    }
  });

  it("has datasource and service variables, and every query is filtered by service", () => {
    const vars = dashboard.templating.list.map((v) => `${v.name}:${v.type}`);
    expect(vars).toEqual(["datasource:datasource", "service:query"]);
    const service = dashboard.templating.list[1];
    const source = /^label_values\((\w+), service\)$/.exec(
      (service?.query as { query?: string } | undefined)?.query ?? "",
    );
    expect(source?.[1] && exported.get(source[1])?.has("service")).toBe(true);
    for (const p of dashboard.panels) {
      for (const t of p.targets ?? []) {
        for (const selector of t.expr.match(/[a-z_:]+\{[^}]*\}/g) ?? []) {
          expect(selector, p.title).toContain('service=~"$service"');
        }
        // Balanced brackets: a typo here would only show in Grafana.
        for (const [open, close] of [
          ["(", ")"],
          ["{", "}"],
          ["[", "]"],
        ] as const) {
          expect(t.expr.split(open).length, `${p.title}: ${t.expr}`).toBe(
            t.expr.split(close).length,
          );
        }
      }
    }
  });

  it("covers RPC, edge, outbox, consumers, pool and event loop", () => {
    const used = new Set(
      dashboard.panels.flatMap((p) =>
        (p.targets ?? []).flatMap((t) => [...promqlNames(t.expr).metrics]),
      ),
    );
    for (const m of [
      "shopmesh_grpc_server_handled_total",
      "shopmesh_grpc_server_handling_seconds_bucket",
      "shopmesh_http_server_requests_total",
      "shopmesh_outbox_backlog",
      "shopmesh_outbox_publish_lag_seconds_bucket",
      "shopmesh_consumer_pending",
      "shopmesh_consumer_redelivered_total",
      "shopmesh_consumer_dead_lettered_total",
      "shopmesh_db_pool_connections",
      "nodejs_eventloop_lag_p99_seconds",
    ]) {
      expect(used, m).toContain(m);
    }
  });

  it("queries only metrics and labels the services export", () => {
    expect(queryProblems(dashboard, exported, types)).toEqual([]);
  });

  it("would catch an unknown metric or label (the check itself)", () => {
    const broken: Dashboard = {
      ...dashboard,
      panels: [
        {
          id: 1,
          type: "timeseries",
          title: "broken",
          gridPos: { h: 8, w: 8, x: 0, y: 0 },
          targets: [
            {
              refId: "A",
              expr: 'sum by (user_id) (rate(shopmesh_grpc_server_handled_total{service=~"$service"}[5m]))',
            },
            {
              refId: "B",
              expr: "histogram_quantile(0.99, rate(shopmesh_nope_seconds_bucket[5m]))",
            },
            { refId: "C", expr: "shopmesh_outbox_backlog_bucket" },
          ],
        },
      ],
    };
    expect(queryProblems(broken, exported, types)).toEqual([
      "broken/A: no label user_id",
      "broken/B: no metric shopmesh_nope_seconds_bucket",
      "broken/C: no metric shopmesh_outbox_backlog_bucket",
    ]);
    expect(
      promqlNames('sum by (a) (rate(x_total{b="1e3"}[5m])) / on(c) y offset 5m > 1e3'),
    ).toEqual({
      metrics: new Set(["x_total", "y"]),
      labels: new Set(["a", "b", "c"]),
    });
  });
});
