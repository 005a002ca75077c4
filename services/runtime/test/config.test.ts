import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ConfigError, env, loadConfig } from "../src/config.js";

const fixture = fileURLToPath(new URL("./fixtures/config-main.ts", import.meta.url));

function run(vars: Record<string, string>) {
  const childEnv: Record<string, string> = { PATH: process.env["PATH"] ?? "", ...vars };
  return spawnSync(process.execPath, ["--import", "tsx", fixture], {
    env: childEnv,
    encoding: "utf8",
    timeout: 20_000,
  });
}

describe("config", () => {
  it("parses, defaults and validates values", () => {
    const spec = { PORT: env.port({ default: 8080 }), MODE: env.oneOf(["a", "b"] as const) };
    expect(loadConfig(spec, { MODE: "b" })).toEqual({ PORT: 8080, MODE: "b" });
    expect(() => loadConfig(spec, { MODE: "c" })).toThrow(/MODE must be one of a, b/);
    expect(() => loadConfig(spec, { MODE: "a", PORT: "70000" })).toThrow(ConfigError);
  });

  it("optionalUrl: undefined when unset, checked like url when set, never echoing it", () => {
    const spec = { SMTP_URL: env.optionalUrl({ protocols: ["smtp", "smtps"] }) };
    expect(loadConfig(spec, {})).toEqual({ SMTP_URL: undefined });
    expect(loadConfig(spec, { SMTP_URL: "" })).toEqual({ SMTP_URL: undefined });
    expect(loadConfig(spec, { SMTP_URL: "smtps://u:p@mail:465" })).toEqual({
      SMTP_URL: "smtps://u:p@mail:465",
    });
    expect(() => loadConfig(spec, { SMTP_URL: "http://mail" })).toThrow(
      'SMTP_URL must use smtp or smtps (got "http:")',
    );
    expect(() => loadConfig(spec, { SMTP_URL: "smtp//u:hunter2@mail" })).toThrow(
      /^SMTP_URL must be a URL$/,
    );
  });

  it("stops a process with exit 1 and one line naming a missing variable", () => {
    const res = run({ PG_URL: "postgres://x@localhost/db" });
    expect(res.status).toBe(1);
    const lines = res.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe("fixture: config error: JWT_AUDIENCE is required but not set");
  });

  it("names a variable with a bad value", () => {
    const res = run({ JWT_AUDIENCE: "shop", PG_URL: "mysql://x", PORT: "1" });
    expect(res.status).toBe(1);
    expect(res.stderr.trim()).toBe(
      'fixture: config error: PG_URL must use postgres or postgresql (got "mysql:")',
    );
  });

  it("starts when the config is good", () => {
    const res = run({ JWT_AUDIENCE: "shop", PG_URL: "postgres://x@localhost/db", PORT: "7000" });
    expect(res.stderr).toBe("");
    expect(res.stdout).toBe("ok 7000\n");
    expect(res.status).toBe(0);
  });
});
