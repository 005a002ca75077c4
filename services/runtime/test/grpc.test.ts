/**
 * The runtime serving a generated service on a real socket, called by the runtime's
 * grpc-js client and by a connect-node gRPC client. The handlers are a stand-in
 * implementation of the real contract, written here to exercise the runtime.
 */
import { randomUUID } from "node:crypto";
import { type AddressInfo, connect, createServer } from "node:net";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code as ConnectCode, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponse_ServingStatus,
} from "@shopmesh/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@shopmesh/gen/grpc/reflection/v1/reflection_pb.js";
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { NotificationService } from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Code,
  createGrpcClient,
  createGrpcServer,
  createLogger,
  currentCall,
  type GrpcServer,
  NotFoundError,
  RpcError,
  serve,
} from "../src/index.js";

const KNOWN = randomUUID();
const SLOW = randomUUID();
const BROKEN = randomUUID();
const ECHO_HEADERS = randomUUID();

let streamsClosed = 0;
let server: GrpcServer;
let port: number;
const logger = createLogger("runtime-test", "silent");

const unimplemented = () => {
  throw new NotFoundError("not in this test");
};

/** A catalog that answers every GetProduct with the id it was asked for. */
const echoCatalog = () =>
  serve(CatalogService, {
    getProduct: async (req) => ({ product: { id: req.productId } }),
    listProducts: unimplemented,
    createProduct: unimplemented,
    updateProduct: unimplemented,
    adjustStock: unimplemented,
  });

beforeAll(async () => {
  server = createGrpcServer({
    logger,
    drainTimeoutMs: 2_000,
    services: [
      serve(CatalogService, {
        async getProduct(req) {
          if (req.productId === SLOW) {
            await new Promise((r) => setTimeout(r, 1_500));
          }
          if (req.productId === BROKEN) {
            throw new Error("db password is hunter2 at /srv/secret.ts:42");
          }
          if (req.productId === ECHO_HEADERS) {
            // The context is reachable through AsyncLocalStorage as well as the argument.
            return {
              product: { id: req.productId, name: currentCall()?.header("authorization") ?? "" },
            };
          }
          if (req.productId !== KNOWN)
            throw new NotFoundError(`product ${req.productId} not found`);
          return {
            product: {
              id: KNOWN,
              sku: "MUG-1",
              name: "Mug",
              price: { currencyCode: "USD", amount: 1299n },
              stock: 3,
              active: true,
            },
          };
        },
        listProducts: unimplemented,
        createProduct: unimplemented,
        updateProduct: unimplemented,
        adjustStock: unimplemented,
      }),
      serve(NotificationService, {
        listNotifications: unimplemented,
        async *watchNotifications() {
          try {
            for (let i = 0; ; i++) {
              yield { notification: { id: String(i), subject: `n${i}` } };
              await new Promise((r) => setTimeout(r, 10));
            }
          } finally {
            streamsClosed++;
          }
        },
      }),
    ],
  });
  port = await server.listen(0, "127.0.0.1");
});

afterAll(async () => {
  await server.shutdown();
});

describe("unary calls", () => {
  it("serves typed responses to the runtime's grpc-js client", async () => {
    const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
    const res = await client.getProduct({ productId: KNOWN });
    expect(res.product?.name).toBe("Mug");
    expect(res.product?.price?.amount).toBe(1299n);
    client.close();
  });

  it("serves typed responses to a connect-node gRPC client", async () => {
    const client = createClient(
      CatalogService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }),
    );
    const res = await client.getProduct({ productId: KNOWN });
    expect(res.product?.sku).toBe("MUG-1");
    expect(res.product?.stock).toBe(3);
  });

  it("maps a typed error to its code", async () => {
    const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
    const err = await client.getProduct({ productId: randomUUID() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe(Code.NOT_FOUND);
    expect((err as RpcError).message).toMatch(/not found/);
    client.close();
  });

  it("rejects a request breaking a validation rule with INVALID_ARGUMENT naming the field", async () => {
    const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
    const err = (await client.getProduct({ productId: "not-a-uuid" }).catch((e) => e)) as RpcError;
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain("product_id");
    client.close();

    // Connect clients read the violations from grpc-status-details-bin.
    const connectClient = createClient(
      CatalogService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }),
    );
    const cerr = ConnectError.from(
      await connectClient.getProduct({ productId: "nope" }).catch((e) => e),
    );
    expect(cerr.code).toBe(ConnectCode.InvalidArgument);
    const [violations] = cerr.findDetails(ViolationsSchema);
    expect(violations?.violations[0]?.ruleId).toBe("string.uuid");
  });

  it("answers DEADLINE_EXCEEDED when the handler outlives the caller's deadline", async () => {
    const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
    const started = Date.now();
    const err = (await client
      .getProduct({ productId: SLOW }, { timeoutMs: 200 })
      .catch((e) => e)) as RpcError;
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(1_400);
    client.close();
  });

  it("turns an unexpected throw into INTERNAL with no internals on the wire", async () => {
    const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
    const err = (await client.getProduct({ productId: BROKEN }).catch((e) => e)) as RpcError;
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toBe("internal error");
    expect(err.message).not.toMatch(/hunter2|secret|\.ts/);
    client.close();
  });

  it("passes metadata given to the client to the handler", async () => {
    const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
    const res = await client.getProduct(
      { productId: ECHO_HEADERS },
      { headers: { authorization: "Bearer abc" } },
    );
    expect(res.product?.name).toBe("Bearer abc");
    client.close();
  });
});

describe("server streaming", () => {
  it("delivers messages and ends cleanly when the client cancels", async () => {
    const client = createGrpcClient(NotificationService, `127.0.0.1:${port}`);
    const before = streamsClosed;
    const got: string[] = [];
    for await (const res of client.watchNotifications({})) {
      got.push(res.notification?.subject ?? "");
      if (got.length === 3) break;
    }
    expect(got).toEqual(["n0", "n1", "n2"]);
    // The server side's finally ran: the cancel reached the handler.
    await expect.poll(() => streamsClosed, { timeout: 2_000 }).toBe(before + 1);
    // And the server keeps serving.
    const again = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
    expect((await again.getProduct({ productId: KNOWN })).product?.id).toBe(KNOWN);
    again.close();
    client.close();
  });
});

describe("connection age", () => {
  it("moves clients to new connections, failing no call and cutting no stream", async () => {
    const aged = createGrpcServer({
      logger,
      maxConnectionAgeMs: 300,
      services: [
        echoCatalog(),
        serve(NotificationService, {
          listNotifications: unimplemented,
          async *watchNotifications() {
            for (let i = 0; ; i++) {
              yield { notification: { id: String(i), subject: `n${i}` } };
              await new Promise((r) => setTimeout(r, 10));
            }
          },
        }),
      ],
    });
    const agedPort = await aged.listen(0, "127.0.0.1");
    // A TCP relay in front of it counts the client's connections.
    let connections = 0;
    const relay = createServer((c) => {
      connections++;
      const up = connect(agedPort, "127.0.0.1");
      c.pipe(up).pipe(c);
      c.on("error", () => up.destroy());
      up.on("error", () => c.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
    const address = `127.0.0.1:${(relay.address() as AddressInfo).port}`;
    const unary = createGrpcClient(CatalogService, address, { maxAttempts: 1 });
    const streaming = createGrpcClient(NotificationService, address);
    try {
      const started = Date.now();
      let streamed = 0;
      let lastStreamedAt = 0;
      const stream = (async () => {
        for await (const _ of streaming.watchNotifications({})) {
          streamed++;
          lastStreamedAt = Date.now() - started;
          if (lastStreamedAt > 1_500) break;
        }
      })();
      let calls = 0;
      while (Date.now() - started < 1_500) {
        const id = randomUUID();
        expect((await unary.getProduct({ productId: id })).product?.id).toBe(id);
        calls++;
        await new Promise((r) => setTimeout(r, 20));
      }
      await stream;
      expect(calls).toBeGreaterThan(20);
      // Over 1.5 s with connections aged 0.3 s: several connections, and the stream that
      // started on the first one ran through to the end.
      expect(connections).toBeGreaterThanOrEqual(3);
      expect(lastStreamedAt).toBeGreaterThan(1_500);
      expect(streamed).toBeGreaterThan(50);
    } finally {
      unary.close();
      streaming.close();
      relay.close();
      await aged.shutdown();
    }
  });
});

describe("reflection", () => {
  it("lists the services and serves their descriptors", async () => {
    const client = createGrpcClient(ServerReflection, `127.0.0.1:${port}`);
    const names: string[] = [];
    for await (const res of client.serverReflectionInfo([
      { messageRequest: { case: "listServices", value: "" } },
    ])) {
      if (res.messageResponse.case === "listServicesResponse") {
        names.push(...res.messageResponse.value.service.map((s) => s.name));
      }
    }
    expect(names).toEqual(
      expect.arrayContaining([
        "shop.catalog.v1.CatalogService",
        "shop.notifications.v1.NotificationService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
      ]),
    );

    const files: string[] = [];
    for await (const res of client.serverReflectionInfo([
      { messageRequest: { case: "fileContainingSymbol", value: "shop.catalog.v1.CatalogService" } },
    ])) {
      if (res.messageResponse.case === "fileDescriptorResponse") {
        for (const bytes of res.messageResponse.value.fileDescriptorProto) {
          files.push(fromBinary(FileDescriptorProtoSchema, bytes).name);
        }
      }
    }
    // The file and its imports, so grpcurl can describe every message with no proto files.
    expect(files).toContain("shop/catalog/v1/catalog.proto");
    expect(files).toContain("shop/common/v1/money.proto");
    expect(files).toContain("google/api/annotations.proto");
    client.close();
  });
});

describe("robustness", () => {
  it("closes a connection that sends garbage and keeps serving others", async () => {
    const closed = await new Promise<boolean>((resolve) => {
      const sock = connect(port, "127.0.0.1", () => {
        sock.write(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02garbage garbage"));
      });
      sock.on("data", () => {});
      sock.on("error", () => {});
      sock.on("close", () => resolve(true));
      setTimeout(() => resolve(false), 5_000);
    });
    expect(closed).toBe(true);
    const client = createGrpcClient(CatalogService, `127.0.0.1:${port}`);
    expect((await client.getProduct({ productId: KNOWN })).product?.id).toBe(KNOWN);
    client.close();
  });
});

describe("health and shutdown", () => {
  it("is SERVING, then NOT_SERVING during shutdown while in-flight calls finish", async () => {
    const own = createGrpcServer({
      logger,
      drainTimeoutMs: 3_000,
      services: [
        serve(CatalogService, {
          async getProduct(req) {
            await new Promise((r) => setTimeout(r, 400));
            return { product: { id: req.productId } };
          },
          listProducts: unimplemented,
          createProduct: unimplemented,
          updateProduct: unimplemented,
          adjustStock: unimplemented,
        }),
      ],
    });
    const p = await own.listen(0, "127.0.0.1");
    const health = createGrpcClient(Health, `127.0.0.1:${p}`);
    expect((await health.check({ service: "" })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    expect((await health.check({ service: "shop.catalog.v1.CatalogService" })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    const unknown = (await health.check({ service: "nope" }).catch((e) => e)) as RpcError;
    expect(unknown.code).toBe(Code.NOT_FOUND);

    const seen: number[] = [];
    const watching = (async () => {
      for await (const res of health.watch({ service: "" })) seen.push(res.status);
    })().catch(() => undefined);
    await expect.poll(() => seen.length).toBe(1);

    const catalog = createGrpcClient(CatalogService, `127.0.0.1:${p}`);
    const inFlight = catalog.getProduct({ productId: KNOWN });
    await new Promise((r) => setTimeout(r, 50));
    const stopping = own.shutdown();
    // The in-flight call completes during the drain.
    expect((await inFlight).product?.id).toBe(KNOWN);
    await stopping;
    await watching;
    expect(seen).toEqual([
      HealthCheckResponse_ServingStatus.SERVING,
      HealthCheckResponse_ServingStatus.NOT_SERVING,
    ]);
    // New calls are refused after shutdown.
    const after = (await catalog
      .getProduct({ productId: KNOWN }, { timeoutMs: 500 })
      .catch((e) => e)) as RpcError;
    expect([Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED]).toContain(after.code);
    catalog.close();
    health.close();
  });
});

describe("circuit breaker", () => {
  it("fails fast once a downstream keeps being unavailable, and recovers", async () => {
    const { freePort } = await import("../src/embedded-postgres.js");
    const deadPort = await freePort();
    const client = createGrpcClient(CatalogService, `127.0.0.1:${deadPort}`, {
      breaker: { threshold: 2, openMs: 300 },
      maxAttempts: 1,
      timeoutMs: 1_000,
    });
    for (let i = 0; i < 2; i++) {
      const err = (await client.getProduct({ productId: KNOWN }).catch((e) => e)) as RpcError;
      expect(err.code).toBe(Code.UNAVAILABLE);
      expect(err.message).not.toMatch(/circuit open/);
    }
    const fast = (await client.getProduct({ productId: KNOWN }).catch((e) => e)) as Error;
    expect(fast.message).toMatch(/circuit open/);
    client.close();

    // A downstream that answered, then went away: calls made after its last answer fail
    // and count, so the circuit opens (each call carries the breaker's ticket).
    const gone = createGrpcServer({
      logger,
      services: [echoCatalog()],
    });
    const gonePort = await gone.listen(0, "127.0.0.1");
    const toGone = createGrpcClient(CatalogService, `127.0.0.1:${gonePort}`, {
      breaker: { threshold: 2, openMs: 5_000 },
      maxAttempts: 1,
      timeoutMs: 1_000,
    });
    expect((await toGone.getProduct({ productId: KNOWN })).product?.id).toBe(KNOWN);
    await gone.shutdown();
    for (let i = 0; i < 2; i++) {
      const err = (await toGone.getProduct({ productId: KNOWN }).catch((e) => e)) as RpcError;
      expect([Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED]).toContain(err.code);
      expect(err.message).not.toMatch(/circuit open/);
    }
    const opened = (await toGone.getProduct({ productId: KNOWN }).catch((e) => e)) as Error;
    expect(opened.message).toMatch(/circuit open/);
    toGone.close();

    // Once the open period passes, a trial call goes through and closes the circuit.
    const healthy = createGrpcClient(CatalogService, `127.0.0.1:${port}`, {
      breaker: { threshold: 1, openMs: 100 },
    });
    expect((await healthy.getProduct({ productId: KNOWN })).product?.id).toBe(KNOWN);
    healthy.close();
  });
});
