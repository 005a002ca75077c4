/**
 * Replicas in the launcher: REPLICAS parsing, port planning (own ports per domain
 * replica, a shared edge port, an admin port each) and the grpc-js targets handed to
 * the services. Real sockets: a busy preferred port is really held.
 */
import { createServer, type Server } from "node:net";
import { ConfigError } from "@shopmesh/runtime/config.js";
import { afterEach, describe, expect, it } from "vitest";
import { replicaCounts, SERVICE_NAMES } from "../src/config.js";
import { freePort } from "../src/net.js";
import { grpcTarget, planProcesses } from "../src/replicas.js";

const parse = (raw: string | undefined) => replicaCounts("REPLICAS").read(raw);
const ones = Object.fromEntries(SERVICE_NAMES.map((n) => [n, 1])) as Record<
  (typeof SERVICE_NAMES)[number],
  number
>;

describe("REPLICAS", () => {
  it("defaults to one of each; a number sets all; name=n sets one and overrides", () => {
    expect(parse(undefined)).toEqual(ones);
    expect(parse("")).toEqual(ones);
    expect(parse("2")).toEqual(Object.fromEntries(SERVICE_NAMES.map((n) => [n, 2])));
    expect(parse("orders=2, payments=3")).toEqual({ ...ones, orders: 2, payments: 3 });
    expect(parse("notifications=1,3")).toEqual({
      ...Object.fromEntries(SERVICE_NAMES.map((n) => [n, 3])),
      notifications: 1,
    });
  });

  it("rejects unknown services, zero, too many and garbage, naming the variable", () => {
    for (const [raw, message] of [
      ["shipping=2", /REPLICAS names an unknown service "shipping"/],
      ["orders=0", /REPLICAS orders must be a whole number from 1 to 8 \(got "0"\)/],
      ["9", /a replica count must be a whole number from 1 to 8 \(got "9"\)/],
      ["orders=two", /got "two"/],
      ["1.5", /got "1.5"/],
    ] as const) {
      expect(() => parse(raw), raw).toThrow(ConfigError);
      expect(() => parse(raw), raw).toThrow(message);
    }
  });
});

describe("planProcesses", () => {
  const held: Server[] = [];
  afterEach(async () => {
    await Promise.all(held.splice(0).map((s) => new Promise((r) => s.close(r))));
  });
  const hold = (port: number) =>
    new Promise<void>((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(port, () => resolve());
      held.push(server);
    });

  it("gives domain replicas base + 10·r, edge replicas the edge port, everyone an admin port", async () => {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const ports = {
      identity: base + 1,
      catalog: base + 2,
      orders: base + 3,
      payments: base + 4,
      notifications: base + 5,
      edge: base,
    };
    // Replica 1 of payments would get base + 14: taken, so a free port instead.
    await hold(base + 14);
    const plans = await planProcesses(
      ["orders", "payments", "edge"],
      {
        ...(ones as Record<(typeof SERVICE_NAMES)[number], number>),
        orders: 3,
        payments: 2,
        edge: 2,
      },
      ports,
      0,
    );
    const of = (s: string) => plans.filter((p) => p.service === s);
    expect(of("orders").map((p) => [p.replica, p.port])).toEqual([
      [0, base + 3],
      [1, base + 13],
      [2, base + 23],
    ]);
    const payments = of("payments");
    expect(payments[0]?.port).toBe(base + 4);
    expect(payments[1]?.port).not.toBe(base + 14);
    expect(of("edge").map((p) => p.port)).toEqual([base, base]);
    const admin = plans.map((p) => p.adminPort);
    expect(new Set(admin).size).toBe(plans.length);
    expect(admin.every((p) => p > 0)).toBe(true);
    const all = plans.filter((p) => p.service !== "edge").map((p) => p.port);
    expect(new Set([...all, ...admin]).size).toBe(all.length + admin.length);
  });

  it("counts admin ports up from the base, and refuses a busy replica-0 port by name", async () => {
    const adminBase = await freePort();
    const port = await freePort();
    const ports = { identity: port, catalog: 1, orders: 2, payments: 3, notifications: 4, edge: 5 };
    const plans = await planProcesses(["identity"], { ...ones, identity: 2 }, ports, adminBase);
    expect(plans.map((p) => p.adminPort)[0]).toBe(adminBase);
    await hold(port);
    await expect(planProcesses(["identity"], ones, ports, 0)).rejects.toThrow(
      `port ${port} (identity) is already in use; stop what holds it or set IDENTITY_PORT`,
    );
  });
});

describe("grpcTarget", () => {
  it("is host:port for one replica and a grpc-js ipv4: list for several", () => {
    expect(grpcTarget([50053])).toBe("127.0.0.1:50053");
    expect(grpcTarget([50053, 50063])).toBe("ipv4:127.0.0.1:50053,127.0.0.1:50063");
  });
});
