/**
 * One terminal for many processes: every line is prefixed with where it came from.
 * `pretty` turns a service's pino JSON line into "time [service] LEVEL msg key=value";
 * `json` keeps the line intact after the prefix (for grep and jq). The launcher's own
 * lines go through the same path under the name "launcher".
 */

export type Level = "trace" | "debug" | "info" | "warn" | "error" | "fatal";
export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

export interface Output {
  /** A line written by a child process (a service, nats-server, PostgreSQL). */
  line(source: string, text: string): void;
  /** A logger for the launcher's own messages, or on behalf of a child (`source`). */
  logger(source: string): Logger;
  /** A plain line, no prefix: the one people look for ("shopmesh ready: ..."). */
  banner(text: string): void;
}

export interface OutputOptions {
  format: "pretty" | "json";
  /** The launcher's own threshold; services filter their lines themselves. */
  level: Level | "silent";
  write?: (chunk: string) => void;
  color?: boolean;
}

const LEVEL_NUMBERS: Record<Level, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
};
const LEVEL_NAMES = new Map(Object.entries(LEVEL_NUMBERS).map(([k, v]) => [v, k as Level]));
// pino's own keys and the ones every shopmesh line carries: not worth repeating.
const QUIET_KEYS = new Set(["level", "time", "msg", "service", "pid", "hostname", "v"]);
const PREFIX_WIDTH = "[notifications]".length;

const ansi = (code: number) => (s: string) => `\u001b[${code}m${s}\u001b[0m`;
const PALETTE = [36, 32, 33, 35, 34, 96, 92, 93, 95, 94].map(ansi);
const LEVEL_STYLE: Record<Level, (s: string) => string> = {
  trace: ansi(90),
  debug: ansi(90),
  info: ansi(32),
  warn: ansi(33),
  error: ansi(31),
  fatal: ansi(41),
};
const dim = ansi(2);

export function createOutput(options: OutputOptions): Output {
  const write = options.write ?? ((chunk: string) => process.stdout.write(chunk));
  const color = options.color ?? false;
  const threshold = options.level === "silent" ? Infinity : LEVEL_NUMBERS[options.level];
  const sourceStyles = new Map<string, (s: string) => string>();

  const prefix = (source: string) => {
    const text = `[${source}]`.padEnd(PREFIX_WIDTH);
    if (!color) return text;
    let style = sourceStyles.get(source);
    if (style === undefined) {
      style = PALETTE[sourceStyles.size % PALETTE.length] ?? dim;
      sourceStyles.set(source, style);
    }
    return style(text);
  };

  const stamp = () => {
    const time = new Date().toTimeString().slice(0, 8);
    return color ? dim(time) : time;
  };

  const pretty = (source: string, level: Level, msg: string, fields: Fields) => {
    const levelText = level.toUpperCase().padEnd(5);
    let out = `${stamp()} ${prefix(source)} ${color ? LEVEL_STYLE[level](levelText) : levelText} ${msg}`;
    let stack: string | undefined;
    for (const [key, value] of Object.entries(fields)) {
      if (QUIET_KEYS.has(key) || value === undefined) continue;
      if ((key === "err" || key === "error") && typeof value === "object" && value !== null) {
        const err = value as { message?: unknown; stack?: unknown };
        out += ` ${key}=${quote(String(err.message ?? ""))}`;
        if (typeof err.stack === "string") stack = err.stack;
        continue;
      }
      out += ` ${key}=${typeof value === "string" ? quote(value) : safeJson(value)}`;
    }
    if (stack !== undefined) out += `\n${stack.replace(/^/gm, "    ")}`;
    write(`${out}\n`);
  };

  const line = (source: string, text: string) => {
    if (text.trim() === "") return;
    if (options.format === "json") {
      write(`${prefix(source)} ${text}\n`);
      return;
    }
    const parsed = parseJsonLine(text);
    if (parsed === undefined) {
      write(`${stamp()} ${prefix(source)} ${text}\n`);
      return;
    }
    const level = LEVEL_NAMES.get(Number(parsed["level"])) ?? "info";
    pretty(source, level, String(parsed["msg"] ?? ""), parsed);
  };

  const logger = (source: string): Logger => {
    const log =
      (level: Level) =>
      (msg: string, fields: Fields = {}) => {
        if (LEVEL_NUMBERS[level] < threshold) return;
        if (options.format === "json") {
          const entry = {
            level: LEVEL_NUMBERS[level],
            time: new Date().toISOString(),
            msg,
            ...fields,
          };
          write(`${prefix(source)} ${safeJson(entry)}\n`);
        } else {
          pretty(source, level, msg, fields);
        }
      };
    return { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
  };

  return { line, logger, banner: (text) => write(`${text}\n`) };
}

function parseJsonLine(text: string): Fields | undefined {
  if (!text.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Fields)
      : undefined;
  } catch {
    return undefined;
  }
}

function quote(value: string): string {
  return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
  } catch {
    return String(value);
  }
}
