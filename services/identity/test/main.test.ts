/**
 * The identity process as deployed: `node --import tsx services/identity/src/main.ts`
 * from the repo root, with its environment.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { KeyService } from "@shopmesh/gen/shop/identity/v1/keys_pb.js";
import { createGrpcClient } from "@shopmesh/runtime";
import { createTestDatabase } from "@shopmesh/runtime/testing.js";
import { decodeProtectedHeader } from "jose";
import { afterAll, describe, expect, it } from "vitest";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
const MAIN = "services/identity/src/main.ts";
const baseEnv = { PATH: process.env["PATH"] ?? "", LOG_LEVEL: "info" };

const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
});

describe("identity process", () => {
  it("exits 1 with one line naming DATABASE_URL when it is unset", () => {
    const res = spawnSync(process.execPath, ["--import", "tsx", MAIN], {
      cwd: repoRoot,
      env: baseEnv,
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(res.status).toBe(1);
    const lines = res.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe("identity: config error: DATABASE_URL is required but not set");
  });

  it("migrates, bootstraps the admin, serves, and stops cleanly on SIGTERM", async () => {
    const testDb = await createTestDatabase("identity_main");
    try {
      const child = spawn(process.execPath, ["--import", "tsx", MAIN], {
        cwd: repoRoot,
        env: {
          ...baseEnv,
          DATABASE_URL: testDb.url,
          NATS_URL: process.env["NATS_URL"] ?? "nats://127.0.0.1:4222",
          PORT: "0",
          ADMIN_EMAIL: "admin@example.com",
          ADMIN_PASSWORD: "admin password 123",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.push(child);
      const logs: string[] = [];
      let stderr = "";
      child.stderr?.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const ready = await new Promise<{ port: number }>((resolve, reject) => {
        const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
        lines.on("line", (line) => {
          logs.push(line);
          const entry = JSON.parse(line) as { msg?: string; port?: number };
          if (entry.msg === "ready" && entry.port !== undefined) resolve({ port: entry.port });
        });
        child.once("exit", (code) => reject(new Error(`exited ${code}: ${stderr}`)));
      });
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

      child.kill("SIGTERM");
      const [code] = await once(child, "exit");
      expect(code).toBe(0);
      expect(stderr).toBe("");
      // Nothing secret reached the log.
      const all = logs.join("\n");
      expect(all).not.toContain("admin password 123");
      expect(all).not.toContain(login.accessToken);
      expect(all).not.toContain(login.refreshToken);
    } finally {
      await testDb.drop();
    }
  });
});
