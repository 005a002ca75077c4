/** identity's configuration: defaults, and errors that name the variable (never a secret). */
import { generateKeyPairSync } from "node:crypto";
import { ConfigError } from "@shopmesh/runtime";
import { describe, expect, it } from "vitest";
import { loadIdentityConfig } from "../src/config.js";

const DATABASE_URL = "postgres://identity:pw@127.0.0.1:5432/identity";
const NATS_URL = "nats://127.0.0.1:4222";

function failure(source: Record<string, string>): ConfigError {
  try {
    loadIdentityConfig(source);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a config error");
}

describe("config", () => {
  it("needs only DATABASE_URL and NATS_URL", () => {
    expect(loadIdentityConfig({ DATABASE_URL, NATS_URL })).toEqual({
      PORT: 50051,
      DATABASE_URL,
      NATS_URL,
      ADMIN_EMAIL: undefined,
      ADMIN_PASSWORD: undefined,
      JWT_PRIVATE_JWK: undefined,
      JWT_ISSUER: "shopmesh-identity",
      JWT_AUDIENCE: "shopmesh",
    });
  });

  it("reads a private JWK", () => {
    const jwk = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
    const config = loadIdentityConfig({
      DATABASE_URL,
      NATS_URL,
      JWT_PRIVATE_JWK: JSON.stringify({ ...jwk, kid: "k1" }),
    });
    expect(config.JWT_PRIVATE_JWK?.kid).toBe("k1");
  });

  it.each([
    [{}, "DATABASE_URL is required but not set"],
    [
      { DATABASE_URL: "mysql://u:hunter2@db/x" },
      'DATABASE_URL must use postgres or postgresql (got "mysql:")',
    ],
    [{ DATABASE_URL: "postgres://u:hunter2@[broken" }, "DATABASE_URL must be a URL"],
    [
      { DATABASE_URL, NATS_URL, ADMIN_EMAIL: "root@example.com" },
      "ADMIN_PASSWORD is required when ADMIN_EMAIL is set",
    ],
    [
      { DATABASE_URL, NATS_URL, ADMIN_PASSWORD: "long enough pw" },
      "ADMIN_EMAIL is required when ADMIN_PASSWORD is set",
    ],
    [
      { DATABASE_URL, NATS_URL, ADMIN_EMAIL: "root", ADMIN_PASSWORD: "long enough" },
      "ADMIN_EMAIL must be an email address",
    ],
    [
      { DATABASE_URL, NATS_URL, ADMIN_EMAIL: "a@b.co", ADMIN_PASSWORD: "hunter2" },
      "ADMIN_PASSWORD must be 10 to 128 characters",
    ],
    [
      { DATABASE_URL, NATS_URL, JWT_PRIVATE_JWK: '{"kty":"OKP","d":"hunter2"' },
      "JWT_PRIVATE_JWK must be a JSON Web Key (not valid JSON)",
    ],
  ])("refuses %j with one message naming the variable", (source, message) => {
    const err = failure(source);
    expect(err.message).toBe(message);
    expect(err.message).not.toContain("hunter2");
  });
});
