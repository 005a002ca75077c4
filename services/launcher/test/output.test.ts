/** Output: pino lines made readable with a prefix, or kept intact after it. */
import { describe, expect, it } from "vitest";
import { createOutput } from "../src/output.js";

function capture(format: "pretty" | "json", level: "info" | "debug" = "info") {
  const chunks: string[] = [];
  const output = createOutput({ format, level, write: (c) => chunks.push(c) });
  return { output, text: () => chunks.join("") };
}

const pinoLine = JSON.stringify({
  level: 50,
  time: "2026-01-01T00:00:00.000Z",
  service: "orders",
  pid: 42,
  msg: "place order failed",
  orderId: "o-1",
  attempt: 2,
  err: { message: "boom", stack: "Error: boom\n    at place (orders.ts:1:1)" },
});

describe("output", () => {
  it("pretty: time, prefix, level, message, the fields that matter, the stack below", () => {
    const { output, text } = capture("pretty");
    output.line("orders", pinoLine);
    const [first, ...rest] = text().trimEnd().split("\n");
    expect(first).toMatch(
      /^\d\d:\d\d:\d\d \[orders\] +ERROR place order failed orderId=o-1 attempt=2 err=boom$/,
    );
    expect(rest).toEqual(["    Error: boom", "        at place (orders.ts:1:1)"]);
  });

  it("pretty: a line that is not JSON is passed on with the prefix", () => {
    const { output, text } = capture("pretty");
    output.line("nats", "[INF] Server is ready");
    expect(text()).toMatch(/^\d\d:\d\d:\d\d \[nats\] +\[INF\] Server is ready\n$/);
  });

  it("json: the service's line intact after the prefix", () => {
    const { output, text } = capture("json");
    output.line("orders", pinoLine);
    expect(text()).toBe(`[orders]        ${pinoLine}\n`);
    expect(JSON.parse(text().slice(text().indexOf("{")))).toMatchObject({
      msg: "place order failed",
    });
  });

  it("the launcher's own lines honour LOG_LEVEL", () => {
    const { output, text } = capture("json", "info");
    const log = output.logger("launcher");
    log.debug("hidden");
    log.warn("shown", { port: 1 });
    const entry = JSON.parse(text().slice(text().indexOf("{")));
    expect(text()).not.toContain("hidden");
    expect(entry).toMatchObject({ level: 40, msg: "shown", port: 1 });
  });
});
