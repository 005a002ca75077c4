/**
 * Test support for identity: `startIdentity` runs the real service on a fresh
 * database (PG_URL) and a real gRPC server on port 0, with clients and a movable
 * clock; plus small helpers for emails, bearer headers and expected errors.
 */
import { randomBytes } from "node:crypto";
import { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { KeyService } from "@shopmesh/gen/shop/identity/v1/keys_pb.js";
import { Code, createGrpcClient, createLogger, RpcError } from "@shopmesh/runtime";
import {
  openTestDatabase,
  startTestServer,
  TEST_AUDIENCE,
  TEST_ISSUER,
} from "@shopmesh/runtime/testing.js";
import { openIdentityDatabase } from "../src/db/database.js";
import { loadSigningKeys } from "../src/keys.js";
import { createIdentityService } from "../src/service.js";

export const PASSWORD = "correct horse battery staple";

export async function startIdentity() {
  const testDb = await openTestDatabase("identity", (url) => openIdentityDatabase(url, { max: 5 }));
  const { database } = testDb;
  const keys = await loadSigningKeys(database.db);
  let offsetMs = 0;
  const clock = {
    now: () => new Date(Date.now() + offsetMs),
    /** Moves the service's clock forward (tokens it signs move too). */
    advance(ms: number) {
      offsetMs += ms;
    },
    reset() {
      offsetMs = 0;
    },
  };
  const handlers = createIdentityService({
    db: database.db,
    keys,
    issuer: TEST_ISSUER,
    audience: TEST_AUDIENCE,
    now: clock.now,
  });
  const { server, port } = await startTestServer(
    handlers.registrations,
    createLogger("identity-test", "silent"),
  );
  const client = createGrpcClient(IdentityService, `127.0.0.1:${port}`);
  const keyClient = createGrpcClient(KeyService, `127.0.0.1:${port}`);
  return {
    db: database.db,
    sql: database.sql,
    keys,
    handlers,
    client,
    keyClient,
    clock,
    port,
    /** Registers a fresh customer and logs in. */
    async customer(displayName = "Test Customer") {
      const email = uniqueEmail();
      const { user } = await client.register({ email, password: PASSWORD, displayName });
      const tokens = await client.login({ email, password: PASSWORD });
      if (user === undefined) throw new Error("register returned no user");
      return { email, user, tokens };
    },
    async close() {
      client.close();
      keyClient.close();
      await server.shutdown();
      await testDb.close();
    },
  };
}

export type Identity = Awaited<ReturnType<typeof startIdentity>>;

export function uniqueEmail(prefix = "user"): string {
  return `${prefix}-${randomBytes(5).toString("hex")}@example.com`;
}

/** "ok", or the status code, of each settled call. */
export function outcomes(results: PromiseSettledResult<unknown>[]): (Code | "ok")[] {
  return results.map((r) =>
    r.status === "fulfilled" ? "ok" : r.reason instanceof RpcError ? r.reason.code : Code.UNKNOWN,
  );
}
