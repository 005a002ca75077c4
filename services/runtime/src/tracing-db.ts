/**
 * Database spans. postgres.js has no tracing hooks and drizzle's own are inert, so
 * drizzle's prepared query (every drizzle statement, in or out of a transaction, goes
 * through `PostgresJsPreparedQuery.execute/all`) is wrapped once, when tracing starts.
 * A span carries the statement's shape as drizzle built it (`$1` placeholders), never
 * parameter values; its parent is the current call's or event's span.
 */
import type { Attributes } from "@opentelemetry/api";
import { PostgresJsPreparedQuery } from "drizzle-orm/postgres-js/session";
import { currentCall } from "./context.js";
import { endSpan, SpanKind, startSpan } from "./tracing.js";

const PATCHED = Symbol.for("shopmesh.drizzle.traced");
const MAX_STATEMENT = 2_000;

/**
 * Span name and attributes of a statement: `select orders`, `insert outbox`, ... A
 * statement of CTEs (`with … as (insert into "orders" …), …`) is named by its first
 * change, `insert orders`: what it is for.
 */
export function statementSpan(statement: string): { name: string; attributes: Attributes } {
  const text = statement.trim();
  const first = (/^\w+/.exec(text)?.[0] ?? "query").toLowerCase();
  const change =
    first === "with"
      ? /\bas\s*\(\s*(insert\s+into|update|delete\s+from)\s+"?([\w.]+)"?/i.exec(text)
      : null;
  const operation = change?.[1] ? (/^\w+/.exec(change[1])?.[0] ?? first).toLowerCase() : first;
  const table =
    change?.[2] ??
    (operation === "insert"
      ? /^insert\s+into\s+"?([\w.]+)"?/i.exec(text)?.[1]
      : operation === "update"
        ? /^update\s+"?([\w.]+)"?/i.exec(text)?.[1]
        : /\bfrom\s+"?([\w.]+)"?/i.exec(text)?.[1]);
  return {
    name: table === undefined ? operation : `${operation} ${table}`,
    attributes: {
      "db.system.name": "postgresql",
      "db.operation.name": operation,
      ...(table === undefined ? {} : { "db.collection.name": table }),
      "db.query.text": text.length > MAX_STATEMENT ? `${text.slice(0, MAX_STATEMENT)}…` : text,
    },
  };
}

/** Runs `run` inside a CLIENT span for `statement`, parented on the current call. */
export async function traceStatement<T>(statement: string, run: () => Promise<T>): Promise<T> {
  const { name, attributes } = statementSpan(statement);
  const { span } = startSpan(name, SpanKind.CLIENT, currentCall()?.trace, attributes);
  try {
    const out = await run();
    endSpan(span, false);
    return out;
  } catch (err) {
    endSpan(span, true, (err as { code?: string }).code ?? "query failed");
    throw err;
  }
}

type Query = { queryString: string };
type Method = (this: Query, ...args: unknown[]) => Promise<unknown>;

export function instrumentDrizzle() {
  const proto = PostgresJsPreparedQuery.prototype as unknown as Record<
    string | symbol,
    Method | boolean
  >;
  if (proto[PATCHED] === true) return;
  proto[PATCHED] = true;
  for (const key of ["execute", "all"]) {
    const original = proto[key] as Method;
    proto[key] = function (this: Query, ...args: unknown[]) {
      return traceStatement(this.queryString, () => original.apply(this, args));
    } as Method;
  }
}
