/**
 * GetMe, GetUser and ListUsers: token checks, who may read whom, the admin
 * bootstrap, keyset pagination, and the UserRegistered event in the outbox.
 */
import { randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import { Role } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { Code, TOKEN_ALG } from "@shopmesh/runtime";
import { bearer, rpcError, TEST_AUDIENCE, TEST_ISSUER } from "@shopmesh/runtime/testing.js";
import { eq } from "drizzle-orm";
import { generateKeyPair, SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureAdmin } from "../src/admin.js";
import { outbox, users } from "../src/db/schema.js";
import { USER_REGISTERED_SUBJECT } from "../src/users.js";
import { type Identity, PASSWORD, startIdentity, uniqueEmail } from "./support.js";

let id: Identity;
const ADMIN_EMAIL = "Root@Example.com";
const ADMIN_PASSWORD = "admin password 123";

beforeAll(async () => {
  id = await startIdentity();
});
afterAll(async () => {
  await id?.close();
});

async function adminToken(): Promise<string> {
  await ensureAdmin(id.db, { email: ADMIN_EMAIL, password: ADMIN_PASSWORD });
  return (await id.client.login({ email: ADMIN_EMAIL, password: ADMIN_PASSWORD })).accessToken;
}

describe("access tokens", () => {
  /** A token like identity's, signed with `key` (identity's own by default). */
  const sign = (
    sub: string,
    o: { key?: Parameters<SignJWT["sign"]>[0]; aud?: string; exp?: number } = {},
  ) =>
    new SignJWT({ roles: ["customer"], email: "x@example.com" })
      .setProtectedHeader({ alg: TOKEN_ALG, kid: id.keys.kid })
      .setIssuer(TEST_ISSUER)
      .setAudience(o.aud ?? TEST_AUDIENCE)
      .setSubject(sub)
      .setJti(randomUUID())
      .setIssuedAt(Math.floor(Date.now() / 1000) - 3600)
      .setExpirationTime(o.exp ?? Math.floor(Date.now() / 1000) + 600)
      .sign(o.key ?? id.keys.privateKey);

  it("accepts a token signed by identity's key (the control case)", async () => {
    const { user } = await id.customer();
    expect((await id.client.getMe({}, bearer(await sign(user.id)))).user?.id).toBe(user.id);
  });

  it.each([
    ["missing", async () => undefined, "missing bearer token"],
    [
      "expired",
      (sub: string) => sign(sub, { exp: Math.floor(Date.now() / 1000) - 60 }),
      "token expired",
    ],
    [
      "signed by a foreign key under identity's kid",
      async (sub: string) =>
        sign(sub, { key: (await generateKeyPair(TOKEN_ALG, { crv: "Ed25519" })).privateKey }),
      "invalid token",
    ],
    [
      "with alg none",
      async (sub: string) =>
        new UnsecuredJWT({ roles: ["admin"] })
          .setIssuer(TEST_ISSUER)
          .setAudience(TEST_AUDIENCE)
          .setSubject(sub)
          .setJti(randomUUID())
          .setIssuedAt()
          .setExpirationTime("15m")
          .encode(),
      "invalid token",
    ],
    ["for another audience", (sub: string) => sign(sub, { aud: "elsewhere" }), "invalid token"],
  ])("refuses GetMe with a token %s", async (_name, make, message) => {
    const { user } = await id.customer();
    const token = await make(user.id);
    const err = await rpcError(id.client.getMe({}, token === undefined ? {} : bearer(token)));
    expect(err.code).toBe(Code.UNAUTHENTICATED);
    expect(err.message).toBe(message);
  });
});

describe("reading users", () => {
  it("lets a customer read themself but not another user", async () => {
    const a = await id.customer();
    const b = await id.customer();
    const own = await id.client.getUser({ userId: a.user.id }, bearer(a.tokens.accessToken));
    expect(own.user?.email).toBe(a.email);
    const err = await rpcError(
      id.client.getUser({ userId: b.user.id }, bearer(a.tokens.accessToken)),
    );
    expect(err.code).toBe(Code.PERMISSION_DENIED);
    // Unknown ids are also PERMISSION_DENIED to a customer: no probing for existence.
    const unknown = await rpcError(
      id.client.getUser({ userId: randomUUID() }, bearer(a.tokens.accessToken)),
    );
    expect(unknown.code).toBe(Code.PERMISSION_DENIED);
  });

  it("lets an admin read any user, NOT_FOUND for an unknown one", async () => {
    const token = await adminToken();
    const { user } = await id.customer();
    expect((await id.client.getUser({ userId: user.id }, bearer(token))).user).toEqual(user);
    const err = await rpcError(id.client.getUser({ userId: randomUUID() }, bearer(token)));
    expect(err.code).toBe(Code.NOT_FOUND);
  });

  it("refuses ListUsers to a customer with PERMISSION_DENIED", async () => {
    const { tokens } = await id.customer();
    const err = await rpcError(id.client.listUsers({}, bearer(tokens.accessToken)));
    expect(err.code).toBe(Code.PERMISSION_DENIED);
  });
});

describe("admin bootstrap", () => {
  it("creates the admin once, with roles admin and customer", async () => {
    const email = uniqueEmail("boss");
    expect(await ensureAdmin(id.db, { email, password: ADMIN_PASSWORD })).toBe("created");
    expect(await ensureAdmin(id.db, { email, password: "another password!" })).toBe("unchanged");
    const login = await id.client.login({ email, password: ADMIN_PASSWORD });
    expect(login.user?.roles).toEqual([Role.ADMIN, Role.CUSTOMER]);
  });

  it("promotes an existing account without changing its password", async () => {
    const { email } = await id.customer();
    expect(await ensureAdmin(id.db, { email, password: "not the password" })).toBe("promoted");
    const login = await id.client.login({ email, password: PASSWORD });
    expect(login.user?.roles).toEqual([Role.ADMIN, Role.CUSTOMER]);
    const err = await rpcError(id.client.login({ email, password: "not the password" }));
    expect(err.code).toBe(Code.UNAUTHENTICATED);
  });
});

describe("ListUsers", () => {
  it("pages through every user, newest first, with no gaps or repeats", async () => {
    const token = await adminToken();
    // 25 users created in the same millisecond: the keyset must break the tie by id.
    const createdAt = new Date();
    await id.db.insert(users).values(
      Array.from({ length: 25 }, (_, i) => ({
        email: uniqueEmail(`bulk${i}`),
        passwordHash: "$argon2id$not-used",
        createdAt,
      })),
    );
    const all = await id.db.select({ id: users.id, createdAt: users.createdAt }).from(users);
    const expected = all
      .sort((x, y) => y.createdAt.getTime() - x.createdAt.getTime() || (x.id < y.id ? 1 : -1))
      .map((u) => u.id);
    expect(expected.length).toBeGreaterThan(25);

    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const res = await id.client.listUsers({ pageSize: 7, pageToken }, bearer(token));
      expect(res.users.length).toBeLessThanOrEqual(7);
      seen.push(...res.users.map((u) => u.id));
      pageToken = res.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 50);
    expect(seen).toEqual(expected);
    expect(pages).toBe(Math.ceil(expected.length / 7));

    const first = await id.client.listUsers({}, bearer(token));
    expect(first.users).toHaveLength(20);
  });

  it("rejects a page token it did not make with INVALID_ARGUMENT", async () => {
    const token = await adminToken();
    const forged = [
      "garbage",
      Buffer.from("2024-01-01 x").toString("base64url"),
      Buffer.from(`2024-13-45T00:00:00.000Z ${randomUUID()}`).toString("base64url"),
      Buffer.from(`2024-01-01T00:00:00.000Z ${"-".repeat(36)}`).toString("base64url"),
    ];
    for (const pageToken of forged) {
      const err = await rpcError(id.client.listUsers({ pageToken }, bearer(token)));
      expect(err.code).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toContain("page_token");
    }
  });
});

describe("events", () => {
  it("writes UserRegistered to the outbox with the registration", async () => {
    const { user } = await id.customer("Grace");
    const rows = await id.db
      .select()
      .from(outbox)
      .where(eq(outbox.subject, USER_REGISTERED_SUBJECT));
    const mine = rows
      .map((row) => ({ row, event: fromBinary(UserRegisteredSchema, row.payload) }))
      .filter(({ event }) => event.userId === user.id);
    expect(mine).toHaveLength(1);
    const [{ row, event } = { row: undefined, event: undefined }] = mine;
    expect(row?.type).toBe("shop.identity.v1.UserRegistered");
    expect(row?.publishedAt).toBeNull();
    expect(event).toMatchObject({ email: user.email, displayName: "Grace", eventId: row?.id });
    expect(event?.occurTime).toBeDefined();
  });
});
