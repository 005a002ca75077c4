/** pino JSON logs, one logger per service, level from LOG_LEVEL. */
import { pino } from "pino";

export type Logger = pino.Logger;

export function createLogger(service: string, level = process.env["LOG_LEVEL"] ?? "info"): Logger {
  return pino({
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
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
  });
}
