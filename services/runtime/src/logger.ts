/**
 * pino JSON logs, one logger per service, level from LOG_LEVEL. A line written while a
 * call or event is handled carries its `trace_id` and `span_id` (when it is traced), so
 * logs and traces join up.
 */
import { pino } from "pino";
import { currentCall } from "./context.js";
import { traceIds } from "./tracing.js";

export type Logger = pino.Logger;

export function createLogger(
  service: string,
  level = process.env["LOG_LEVEL"] ?? "info",
  /** Where lines go instead of standard output (tests read them). */
  destination?: pino.DestinationStream,
): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service },
    // pino merges into the mixin's object: a fresh one each line.
    mixin: () => traceIds(currentCall()?.trace) ?? {},
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: { err: safeError },
    // Secrets never reach a log line, whatever a caller passes in.
    redact: {
      paths: [
        "password",
        "*.password",
        "authorization",
        "*.authorization",
        "token",
        "*.token",
        "paymentToken",
        "*.paymentToken",
        "refreshToken",
        "*.refreshToken",
      ],
      censor: "[redacted]",
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/**
 * A child logger made on first use: a pino child serialises (and redacts) its bindings
 * when made, and most calls and events never write a line of their own.
 */
export function childWhenUsed(logger: Logger, bindings: pino.Bindings): () => Logger {
  let child: Logger | undefined;
  return () => {
    child ??= logger.child(bindings);
    return child;
  };
}

/**
 * Error serializer that keeps query parameters out of the log: drizzle's query errors
 * carry the statement's parameters (emails, hashes, tokens) in `params` and in their
 * message. The statement shape and the database's own error stay.
 */
function safeError(err: unknown): unknown {
  const base = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  if (base && typeof base === "object" && "params" in base) {
    delete base["params"];
    if (typeof base["message"] === "string") {
      base["message"] = base["message"].split("\nparams:")[0];
    }
    if (typeof base["stack"] === "string") {
      base["stack"] = base["stack"].replace(/\nparams:[^\n]*/, "");
    }
  }
  return base;
}
