/**
 * Config read from the environment once, validated, typed. A bad or missing value
 * stops the process with exit code 1 and one line naming the variable.
 */

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable} ${message}`);
  }
}

/** How to read one variable: parse a raw string (undefined when unset) or throw a message. */
export interface Field<T> {
  read(raw: string | undefined): T;
}

type Spec = Record<string, Field<unknown>>;
export type Config<S extends Spec> = { [K in keyof S]: S[K] extends Field<infer T> ? T : never };

class Invalid extends Error {}

function field<T>(parse: (raw: string) => T, fallback?: () => T): Field<T> {
  return {
    read(raw) {
      if (raw === undefined || raw === "") {
        if (fallback) return fallback();
        throw new Invalid("is required but not set");
      }
      return parse(raw);
    },
  };
}

/** Field builders. `default` makes a variable optional. */
export const env = {
  string: (o: { default?: string } = {}) =>
    field((raw) => raw, o.default === undefined ? undefined : () => o.default as string),
  optionalString: (): Field<string | undefined> => ({ read: (raw) => (raw ? raw : undefined) }),
  int: (o: { default?: number; min?: number; max?: number } = {}) =>
    field(
      (raw) => {
        const n = Number(raw);
        if (!Number.isInteger(n)) throw new Invalid(`must be an integer (got "${raw}")`);
        if (o.min !== undefined && n < o.min) throw new Invalid(`must be >= ${o.min} (got ${n})`);
        if (o.max !== undefined && n > o.max) throw new Invalid(`must be <= ${o.max} (got ${n})`);
        return n;
      },
      o.default === undefined ? undefined : () => o.default as number,
    ),
  port: (o: { default?: number } = {}) => env.int({ ...o, min: 0, max: 65535 }),
  url: (o: { default?: string; protocols?: string[] } = {}) =>
    field(
      (raw) => {
        let u: URL;
        try {
          u = new URL(raw);
        } catch {
          // Not the raw value: a URL may hold a password.
          throw new Invalid("must be a URL");
        }
        if (o.protocols && !o.protocols.includes(u.protocol.replace(/:$/, ""))) {
          throw new Invalid(`must use ${o.protocols.join(" or ")} (got "${u.protocol}")`);
        }
        return raw;
      },
      o.default === undefined ? undefined : () => o.default as string,
    ),
  /** A URL that may be unset (undefined), checked as env.url checks it when set. */
  optionalUrl: (o: { protocols?: string[] } = {}): Field<string | undefined> => {
    const url = env.url(o);
    return { read: (raw) => (raw ? url.read(raw) : undefined) };
  },
  oneOf: <T extends string>(values: readonly T[], o: { default?: T } = {}) =>
    field(
      (raw) => {
        if (!values.includes(raw as T)) {
          throw new Invalid(`must be one of ${values.join(", ")} (got "${raw}")`);
        }
        return raw as T;
      },
      o.default === undefined ? undefined : () => o.default as T,
    ),
};

/** Reads every variable of `spec`; throws ConfigError naming the first bad one. */
export function loadConfig<S extends Spec>(
  spec: S,
  source: Record<string, string | undefined> = process.env,
): Config<S> {
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(spec)) {
    try {
      out[name] = f.read(source[name]);
    } catch (err) {
      if (err instanceof Invalid) throw new ConfigError(name, err.message);
      throw err;
    }
  }
  return out as Config<S>;
}

/** loadConfig, or print one line naming the variable and exit 1. */
export function loadConfigOrExit<S extends Spec>(spec: S, service: string): Config<S> {
  try {
    return loadConfig(spec);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${service}: config error: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

/** Variables every service reads to verify access tokens. */
export const authEnv = {
  JWT_ISSUER: env.string({ default: "shopmesh-identity" }),
  JWT_AUDIENCE: env.string({ default: "shopmesh" }),
  /** identity's gRPC address, where KeyService serves the JWKS. */
  IDENTITY_ADDR: env.string({ default: "127.0.0.1:50051" }),
};
