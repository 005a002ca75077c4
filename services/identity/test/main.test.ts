/**
 * The identity process as deployed: `node --import tsx services/identity/src/main.ts`
 * from the repo root, with its environment.
 */
import { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { KeyService } from "@shopmesh/gen/shop/identity/v1/keys_pb.js";
import { createGrpcClient } from "@shopmesh/runtime";
import { createTestDatabase, killSpawned, spawnService } from "@shopmesh/runtime/testing.js";
import { decodeProtectedHeader } from "jose";
import { afterAll, describe, expect, it } from "vitest";

/** Only PATH from this environment: nothing of the test run's reaches the process. */
const start = (env: Record<string, string | undefined>) =>
  spawnService("services/identity/src/main.ts", env, {
    baseEnv: { PATH: process.env["PATH"] ?? "" },
  });

afterAll(killSpawned);

describe("identity process", () => {
  it("exits 1 with one line naming DATABASE_URL when it is unset", async () => {
    const p = start({});
    expect(await p.exited).toBe(1);
    const lines = p.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe("identity: config error: DATABASE_URL is required but not set");
  });

  it("migrates, bootstraps the admin, serves, and stops cleanly on SIGTERM", async () => {
    const testDb = await createTestDatabase("identity_main");
    try {
      const p = start({
        DATABASE_URL: testDb.url,
        NATS_URL: process.env["NATS_URL"] ?? "nats://127.0.0.1:4222",
        PORT: "0",
        ADMIN_EMAIL: "admin@example.com",
        ADMIN_PASSWORD: "admin password 123",
      });
      const ready = await p.ready();
      expect(ready.port).toBeGreaterThan(0);

      const address = `127.0.0.1:${ready.port}`;
      const identity = createGrpcClient(IdentityService, address);
      const keys = createGrpcClient(KeyService, address);
      const login = await identity.login({
        email: "admin@example.com",
        password: "admin password 123",
      });
      expect(login.user?.email).toBe("admin@example.com");
      const jwks = await keys.getJwks({});
      expect(jwks.keys.map((k) => k.kid)).toEqual([decodeProtectedHeader(login.accessToken).kid]);
      identity.close();
      keys.close();

      expect(await p.stop()).toBe(0);
      expect(p.stderr()).toBe("");
      // Every line is a JSON log entry, and nothing secret reached the log.
      const all = p.stdout();
      for (const line of all.trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
      expect(all).not.toContain("admin password 123");
      expect(all).not.toContain(login.accessToken);
      expect(all).not.toContain(login.refreshToken);
    } finally {
      await testDb.drop();
    }
  });
});
