/**
 * The runtime's tracing helpers without an SDK (tracing off, as in every other test):
 * statement span names, and W3C trace context carried through unchanged, so that an
 * incoming `traceparent` still reaches the next hop when nothing is exported. The
 * exported spans themselves are checked end to end (services/edge/test/observability.e2e.test.ts).
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it, vi } from "vitest";
import { type EventMessage, runInEventContext } from "../src/bus.js";
import { currentCall } from "../src/context.js";
import { createLogger } from "../src/logger.js";
import {
  extractTrace,
  SpanKind,
  startSpan,
  traceHeaders,
  traceIds,
  untraced,
} from "../src/tracing.js";
import { statementSpan } from "../src/tracing-db.js";

describe("statementSpan", () => {
  it("names a statement by its operation and table, and keeps only its shape", () => {
    const cases: [string, string][] = [
      ['select "id", "sku" from "products" where "products"."id" = $1', "select products"],
      ['insert into "orders" ("id", "user_id") values ($1, $2)', "insert orders"],
      ['update "outbox" set "published_at" = now() where seq = any($1)', "update outbox"],
      ['delete from "inbox" where "processed_at" < $1', "delete inbox"],
      ["select pg_notify('outbox', '')", "select"],
      // A statement of CTEs: named by its first change.
      [
        'with placed as (insert into "orders" (id) values ($1) returning id), history as (insert into "order_history" (order_id) select id from placed) select * from placed',
        "insert orders",
      ],
      [
        'with changed as (update "payments" set status = $1 where id = $2 returning *) select * from changed',
        "update payments",
      ],
      [
        "with sent as (delete from placements where order_id = $1 returning 1) select count(*) from sent",
        "delete placements",
      ],
      ["with recursive t(n) as (select 1) select n from t", "with t"],
    ];
    for (const [sql, name] of cases) expect(statementSpan(sql).name).toBe(name);
    const attrs = statementSpan('insert into "orders" ("id") values ($1)').attributes;
    expect(attrs).toMatchObject({
      "db.system.name": "postgresql",
      "db.operation.name": "insert",
      "db.collection.name": "orders",
      "db.query.text": 'insert into "orders" ("id") values ($1)',
    });
  });

  it("cuts a very long statement", () => {
    const text = statementSpan(`select ${"x, ".repeat(2_000)}1 from t`).attributes["db.query.text"];
    expect(String(text).length).toBeLessThanOrEqual(2_001);
  });
});

describe("trace context with tracing off", () => {
  const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

  it("passes an incoming traceparent on unchanged through a (non-recording) span", () => {
    const parent = extractTrace((k) => (k === "traceparent" ? traceparent : undefined));
    const { span, context } = startSpan("x", SpanKind.SERVER, parent);
    expect(span.isRecording()).toBe(false);
    expect(traceHeaders(context)).toEqual({ traceparent });
    expect(traceIds(context)).toEqual({
      trace_id: "0af7651916cd43dd8448eb211c80319c",
      span_id: "b7ad6b7169203331",
    });
  });

  it("writes nothing when there is no trace, or the path is not traced", () => {
    const root = extractTrace(() => undefined);
    expect(traceHeaders(startSpan("x", SpanKind.SERVER, root).context)).toEqual({});
    expect(traceHeaders(untraced().context)).toEqual({});
    expect(traceIds(untraced().context)).toBeUndefined();
  });

  it("ignores a malformed traceparent", () => {
    const bad = extractTrace((k) => (k === "traceparent" ? "00-zz-yy-01" : undefined));
    expect(traceHeaders(startSpan("x", SpanKind.SERVER, bad).context)).toEqual({});
  });
});

describe("the line of a handled event", () => {
  const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const message: EventMessage = {
    subject: "shop.test.happened",
    data: new Uint8Array(),
    eventId: "0193a3c0-0000-7000-8000-000000000001",
    headers: { traceparent, "X-Request-Id": "req-1" },
    deliveryCount: 2,
  };
  const capture = (level: string) => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger("probe", level, {
      write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    return { lines, logger };
  };

  it("is one line per delivery with its ids and trace; the handler's own lines carry them too", async () => {
    const { lines, logger } = capture("info");
    await runInEventContext(message, logger, "probe-consumer", async () => {
      currentCall()?.logger.warn({ detail: 1 }, "inside");
    });
    await expect(
      runInEventContext(message, logger, "probe-consumer", async () => {
        throw new Error("handler failed");
      }),
    ).rejects.toThrow("handler failed");
    const ids = {
      service: "probe",
      subject: "shop.test.happened",
      event_id: message.eventId,
      request_id: "req-1",
      trace_id: "0af7651916cd43dd8448eb211c80319c",
    };
    const events = lines.filter((l) => l["msg"] === "event");
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ ...ids, ok: true, delivery: 2 });
    expect(events[1]).toMatchObject({ ...ids, ok: false, delivery: 2 });
    expect(typeof events[0]?.["duration_ms"]).toBe("number");
    expect(lines.find((l) => l["msg"] === "inside")).toMatchObject({ ...ids, detail: 1 });
  });

  it("comes from the service's logger: a child logger is made only for a handler that logs", async () => {
    const { lines, logger } = capture("info");
    const child = vi.spyOn(logger, "child");
    await runInEventContext(message, logger, "probe-consumer", async () => undefined);
    expect(child).not.toHaveBeenCalled();
    await runInEventContext(message, logger, "probe-consumer", async () => {
      currentCall()?.logger.info("one");
      currentCall()?.logger.info("two");
    });
    expect(child).toHaveBeenCalledTimes(1);
    expect(lines.filter((l) => l["msg"] === "event")).toHaveLength(2);
  });

  it("is not written above the info level, where the handler's warnings still are", async () => {
    const { lines, logger } = capture("warn");
    await runInEventContext(message, logger, "probe-consumer", async () => {
      currentCall()?.logger.warn("inside");
    });
    expect(lines.map((l) => l["msg"])).toEqual(["inside"]);
  });
});

describe("telemetry start-up", () => {
  const register = fileURLToPath(new URL("../src/telemetry-register.ts", import.meta.url));
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, ["--import", "tsx", "--import", register, "-e", "0"], {
      env: { ...process.env, ...env },
      encoding: "utf8",
    });

  it("stops a process with one line naming a protocol it cannot export with", () => {
    const r = run({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:1",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "probe",
    });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(
      "probe: config error: OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf",
    );
  });

  it("starts quietly with either protocol, and does nothing without an endpoint", () => {
    for (const protocol of ["grpc", "http/protobuf"]) {
      const r = run({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:1",
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      });
      expect([r.status, r.stderr]).toEqual([0, ""]);
    }
    expect(run({ OTEL_EXPORTER_OTLP_PROTOCOL: "nonsense" }).status).toBe(0);
  });
});
