/**
 * The payments process as deployed: `node --import tsx services/payments/src/main.ts`
 * from the repo root. Bad config stops it with one line; good config migrates, consumes
 * OrderPlaced, publishes PaymentSucceeded through the outbox relay, serves, and stops
 * cleanly on SIGTERM.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { OrderPlacedSchema } from "@shopmesh/gen/shop/orders/v1/events_pb.js";
import { PaymentSucceededSchema } from "@shopmesh/gen/shop/payments/v1/events_pb.js";
import { PaymentService } from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { connectBus, STREAM } from "@shopmesh/runtime/bus.js";
import { freePort } from "@shopmesh/runtime/embedded-postgres.js";
import { Code } from "@shopmesh/runtime/errors.js";
import { createGrpcClient } from "@shopmesh/runtime/grpc-client.js";
import { createTestDatabase } from "@shopmesh/runtime/testing.js";
import { afterAll, describe, expect, it } from "vitest";
import { durableNames, SUBJECTS } from "../src/events.js";
import { logger, NATS_URL, rpcError } from "./harness.js";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
const children: ChildProcess[] = [];

function start(env: Record<string, string | undefined>) {
  const merged: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "info", ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  const child = spawn(process.execPath, ["--import", "tsx", "services/payments/src/main.ts"], {
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

// Each test starts a process through tsx, which takes seconds on a loaded machine.
describe("main", { timeout: 90_000 }, () => {
  it("exits 1 with one stderr line naming NATS_URL when it is not set", async () => {
    const p = start({ DATABASE_URL: "postgres://x@127.0.0.1/x", NATS_URL: undefined });
    expect(await p.exited).toBe(1);
    const lines = p.err().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^payments: config error: NATS_URL /);
  });

  it("exits 1 naming PROVIDER_LATENCY_MS when it is not a number", async () => {
    const p = start({
      DATABASE_URL: "postgres://x@127.0.0.1/x",
      NATS_URL,
      PROVIDER_LATENCY_MS: "slow",
    });
    expect(await p.exited).toBe(1);
    expect(p.err().trim()).toMatch(/^payments: config error: PROVIDER_LATENCY_MS [^\n]*$/);
  });

  it("charges an order end to end, serves, and stops cleanly on SIGTERM", async () => {
    // A NATS of its own: the process runs with its production consumer names and relays
    // what it charges, and neither may touch the stream other test runs share.
    const nats = await startPrivateNats();
    const db = await createTestDatabase("payments_main");
    const bus = await connectBus({ url: nats.url, name: "payments-main-test", logger });
    try {
      const p = start({ DATABASE_URL: db.url, NATS_URL: nats.url, PORT: "0" });
      const readyLine = () =>
        p
          .out()
          .split("\n")
          .find((l) => l.includes('"msg":"ready"'));
      await expect.poll(readyLine, { timeout: 20_000, interval: 100 }).toBeDefined();
      const port = (JSON.parse(readyLine() ?? "{}") as { port: number }).port;
      expect(port).toBeGreaterThan(0);
      const consumers = [];
      for await (const c of bus.jsm.consumers.list(STREAM)) consumers.push(c.name);
      expect(consumers.sort()).toEqual(Object.values(durableNames()).sort());

      const orderId = randomUUID();
      const eventId = randomUUID();
      const placed = create(OrderPlacedSchema, {
        eventId,
        orderId,
        userId: randomUUID(),
        total: { currencyCode: "USD", amount: 1_234n },
        paymentToken: "tok_visa",
      });
      await bus.js.publish(SUBJECTS.orderPlaced, toBinary(OrderPlacedSchema, placed), {
        msgID: eventId,
      });

      // The outbox relay publishes PaymentSucceeded, with the event id as Nats-Msg-Id.
      const lastSucceeded = () =>
        bus.jsm.streams
          .getMessage(STREAM, { last_by_subj: SUBJECTS.paymentSucceeded })
          .catch(() => null);
      await expect.poll(lastSucceeded, { timeout: 15_000, interval: 100 }).not.toBeNull();
      const msg = await lastSucceeded();
      const succeeded = fromBinary(PaymentSucceededSchema, msg?.data ?? new Uint8Array());
      expect(succeeded).toMatchObject({ orderId, amount: { currencyCode: "USD", amount: 1_234n } });
      expect(msg?.header.get("Nats-Msg-Id")).toBe(succeeded.eventId);

      const client = createGrpcClient(PaymentService, `127.0.0.1:${port}`);
      const err = await rpcError(client.getPayment({ paymentId: succeeded.paymentId }));
      expect(err.code).toBe(Code.UNAUTHENTICATED);
      client.close();

      // The payment token never reaches a log line.
      expect(p.out() + p.err()).not.toContain("tok_visa");
      p.child.kill("SIGTERM");
      expect(await p.exited).toBe(0);
      expect(p.out()).toContain('"msg":"stopped"');
    } finally {
      await bus.close();
      await db.drop();
      await nats.stop();
    }
  });
});

/**
 * A throwaway nats-server with JetStream on a free port (nats-server must be on PATH).
 * No wait for it here: connectBus waits for the first connection.
 */
async function startPrivateNats() {
  const dir = mkdtempSync(join(tmpdir(), "payments-nats-"));
  const port = await freePort();
  const server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
    stdio: "ignore",
  });
  children.push(server);
  const url = `nats://127.0.0.1:${port}`;
  return {
    url,
    async stop() {
      server.kill("SIGTERM");
      if (server.exitCode === null) await once(server, "exit");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
