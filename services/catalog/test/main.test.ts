/**
 * The catalog process as deployed: `node --import tsx services/catalog/src/main.ts`
 * from the repo root. Bad config stops it with one line; good config serves.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createTestDatabase } from "@shopmesh/runtime/testing.js";
import { afterAll, describe, expect, it } from "vitest";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
const children: ChildProcess[] = [];

function start(env: Record<string, string | undefined>) {
  const merged: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "info", ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  const child = spawn(process.execPath, ["--import", "tsx", "services/catalog/src/main.ts"], {
    cwd: repoRoot,
    env: merged,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, "exit").then(([code]) => code as number | null);
  return { child, exited, out: () => stdout, err: () => stderr };
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

describe("main", () => {
  it("exits 1 with one stderr line naming DATABASE_URL when it is not set", async () => {
    const p = start({ DATABASE_URL: undefined });
    expect(await p.exited).toBe(1);
    const lines = p.err().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("DATABASE_URL");
  });

  it("exits 1 naming SEED_DEMO_CATALOG when it is not true or false", async () => {
    const p = start({ DATABASE_URL: "postgres://x@127.0.0.1/x", SEED_DEMO_CATALOG: "yes" });
    expect(await p.exited).toBe(1);
    expect(p.err().trim()).toMatch(/^catalog: config error: SEED_DEMO_CATALOG .*$/);
  });

  it("migrates, seeds, serves and stops cleanly on SIGTERM", async () => {
    const db = await createTestDatabase("catalog_main");
    try {
      const p = start({ DATABASE_URL: db.url, PORT: "0", SEED_DEMO_CATALOG: undefined });
      const readyLine = () =>
        p
          .out()
          .split("\n")
          .find((l) => l.includes('"msg":"ready"'));
      await expect.poll(readyLine, { timeout: 20_000, interval: 100 }).toBeDefined();
      const port = (JSON.parse(readyLine() ?? "{}") as { port: number }).port;
      expect(port).toBeGreaterThan(0);

      const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
      const res = await client.listProducts({ pageSize: 100 });
      expect(res.products.length).toBeGreaterThanOrEqual(12);
      client.close();

      p.child.kill("SIGTERM");
      expect(await p.exited).toBe(0);
    } finally {
      await db.drop();
    }
  });
});
