/**
 * Register, Login and Refresh over a real gRPC server and database: credentials,
 * throttling, token contents and refresh-token rotation with reuse detection.
 */
import { create } from "@bufbuild/protobuf";
import { LoginRequestSchema, Role } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { type CallContext, Code, ResourceExhaustedError } from "@shopmesh/runtime";
import { bearer, rpcError, TEST_AUDIENCE, TEST_ISSUER } from "@shopmesh/runtime/testing.js";
import { eq } from "drizzle-orm";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { refreshTokens, users } from "../src/db/schema.js";
import { INVALID_CREDENTIALS } from "../src/service.js";
import { LOGIN_WINDOW_MS, MAX_LOGIN_FAILURES } from "../src/throttle.js";
import { type Identity, outcomes, PASSWORD, startIdentity, uniqueEmail } from "./support.js";

let id: Identity;

beforeAll(async () => {
  id = await startIdentity();
});
afterAll(async () => {
  await id?.close();
});
afterEach(() => {
  id.clock.reset();
});

describe("register and login", () => {
  it("registers, logs in, and GetMe returns the same user", async () => {
    const email = uniqueEmail();
    const registered = await id.client.register({ email, password: PASSWORD, displayName: "Ada" });
    expect(registered.user).toMatchObject({ email, displayName: "Ada", roles: [Role.CUSTOMER] });
    expect(registered.user?.createTime).toBeDefined();

    const login = await id.client.login({ email, password: PASSWORD });
    expect(login.tokenType).toBe("Bearer");
    expect(login.expiresIn).toBe(900);
    expect(login.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(login.user?.id).toBe(registered.user?.id);
    const expire = Number(login.accessTokenExpireTime?.seconds) * 1000;
    expect(Math.abs(expire - (Date.now() + 900_000))).toBeLessThan(5_000);

    const claims = decodeJwt(login.accessToken);
    expect(claims).toMatchObject({
      iss: TEST_ISSUER,
      aud: TEST_AUDIENCE,
      sub: registered.user?.id,
      roles: ["customer"],
      email,
    });
    expect(Number(claims.exp) - Number(claims.iat)).toBe(900);
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(decodeProtectedHeader(login.accessToken)).toMatchObject({
      alg: "EdDSA",
      kid: id.keys.kid,
    });

    const me = await id.client.getMe({}, bearer(login.accessToken));
    expect(me.user).toEqual(registered.user);
  });

  it("stores an argon2id hash and the email normalised", async () => {
    const email = uniqueEmail("Mixed.Case");
    await id.client.register({ email: email.toUpperCase(), password: PASSWORD });
    const [row] = await id.db.select().from(users).where(eq(users.email, email.toLowerCase()));
    expect(row?.passwordHash).toMatch(/^\$argon2id\$v=19\$m=65536,t=3,p=1\$/);
    expect(row?.passwordHash).not.toContain(PASSWORD);
    // Login works whatever the case the email is typed in.
    const login = await id.client.login({ email: email.toUpperCase(), password: PASSWORD });
    expect(login.user?.email).toBe(email.toLowerCase());
  });

  it("refuses a taken email, also in another case, with ALREADY_EXISTS", async () => {
    const email = uniqueEmail();
    await id.client.register({ email, password: PASSWORD });
    for (const again of [email, email.toUpperCase()]) {
      const err = await rpcError(id.client.register({ email: again, password: PASSWORD }));
      expect(err.code).toBe(Code.ALREADY_EXISTS);
      expect(err.message).toBe("email already registered");
    }
  });

  it("lets only one of two concurrent registrations of an email succeed", async () => {
    const email = uniqueEmail();
    const results = await Promise.allSettled([
      id.client.register({ email, password: PASSWORD }),
      id.client.register({ email: email.toUpperCase(), password: PASSWORD }),
    ]);
    expect(outcomes(results).sort()).toEqual([Code.ALREADY_EXISTS, "ok"]);
  });

  it.each([
    ["email", { email: "not-an-email", password: PASSWORD }],
    ["password", { email: uniqueEmail(), password: "short" }],
  ])("rejects a bad %s with INVALID_ARGUMENT naming the field", async (field, req) => {
    const err = await rpcError(id.client.register(req));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain(field);
  });

  it("answers a wrong password and an unknown email identically, in comparable time", async () => {
    const { email } = await id.customer();
    const timed = async (e: string, password: string) => {
      const started = performance.now();
      const err = await rpcError(id.client.login({ email: e, password }));
      return { err, ms: performance.now() - started };
    };
    const wrong = [];
    const unknown = [];
    // Below the throttling limit for the known email; a fresh unknown email each time.
    for (let i = 0; i < MAX_LOGIN_FAILURES - 1; i++) {
      wrong.push(await timed(email, "wrong password!"));
      unknown.push(await timed(uniqueEmail("nobody"), "wrong password!"));
    }
    for (const { err } of [...wrong, ...unknown]) {
      expect(err.code).toBe(Code.UNAUTHENTICATED);
      expect(err.message).toBe(INVALID_CREDENTIALS);
    }
    // The unknown email is checked against a dummy hash: no fast path to measure.
    const median = (xs: { ms: number }[]) => {
      const ms = xs.map((x) => x.ms).sort((a, b) => a - b);
      return ((ms[1] ?? 0) + (ms[2] ?? 0)) / 2;
    };
    const ratio = median(unknown) / median(wrong);
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(2);
  });
});

describe("login throttling", () => {
  it(`refuses logins after ${MAX_LOGIN_FAILURES} failures until the window passes`, async () => {
    const { email } = await id.customer();
    for (let i = 0; i < MAX_LOGIN_FAILURES; i++) {
      const err = await rpcError(id.client.login({ email, password: "wrong password!" }));
      expect(err.code).toBe(Code.UNAUTHENTICATED);
    }
    // Now even the right password is refused.
    const err = await rpcError(id.client.login({ email, password: PASSWORD }));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    // The retry-after trailer is not surfaced by RpcError: ask the handler itself
    // (Login reads nothing from the call context).
    const thrown = await Promise.resolve()
      .then(() =>
        id.handlers.identity.login(
          create(LoginRequestSchema, { email, password: PASSWORD }),
          {} as CallContext,
        ),
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(thrown).toBeInstanceOf(ResourceExhaustedError);
    const retryAfter = (thrown as ResourceExhaustedError).retryAfterSeconds ?? 0;
    expect(retryAfter).toBeGreaterThan(LOGIN_WINDOW_MS / 1000 - 60);
    expect(retryAfter).toBeLessThanOrEqual(LOGIN_WINDOW_MS / 1000);

    id.clock.advance(LOGIN_WINDOW_MS + 1_000);
    const login = await id.client.login({ email, password: PASSWORD });
    expect(login.user?.email).toBe(email);
  });

  it("throttles unknown emails the same way", async () => {
    const email = uniqueEmail("ghost");
    for (let i = 0; i < MAX_LOGIN_FAILURES; i++) {
      await rpcError(id.client.login({ email, password: "wrong password!" }));
    }
    const err = await rpcError(id.client.login({ email, password: "wrong password!" }));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
  });

  it("forgets failures after a successful login", async () => {
    const { email } = await id.customer();
    for (const round of [1, 2]) {
      for (let i = 0; i < MAX_LOGIN_FAILURES - 1; i++) {
        await rpcError(id.client.login({ email, password: "wrong password!" }));
      }
      const login = await id.client.login({ email, password: PASSWORD });
      expect(login.user?.email, `round ${round}`).toBe(email);
    }
  });
});

describe("refresh", () => {
  it("rotates the token; a reused token revokes the whole family", async () => {
    const { tokens, user } = await id.customer();
    const other = await id.client.login({ email: user.email, password: PASSWORD });

    const first = await id.client.refresh({ refreshToken: tokens.refreshToken });
    expect(first.refreshToken).not.toBe(tokens.refreshToken);
    expect(first.user?.id).toBe(user.id);
    expect((await id.client.getMe({}, bearer(first.accessToken))).user?.id).toBe(user.id);

    // The rotated token comes back: reuse.
    const reuse = await rpcError(id.client.refresh({ refreshToken: tokens.refreshToken }));
    expect(reuse.code).toBe(Code.UNAUTHENTICATED);
    expect(reuse.message).toBe("refresh token reuse detected");
    // The token issued by the rotation is revoked with its family...
    const revoked = await rpcError(id.client.refresh({ refreshToken: first.refreshToken }));
    expect(revoked.code).toBe(Code.UNAUTHENTICATED);
    const family = await id.db
      .select()
      .from(refreshTokens)
      .where(eq(refreshTokens.userId, user.id));
    expect(family.filter((t) => t.revokedAt !== null)).toHaveLength(2);
    // ...but another login (another family) is untouched.
    const again = await id.client.refresh({ refreshToken: other.refreshToken });
    expect(again.user?.id).toBe(user.id);
  });

  it("lets only one of two concurrent refreshes of a token succeed", async () => {
    const { tokens } = await id.customer();
    const results = await Promise.allSettled([
      id.client.refresh({ refreshToken: tokens.refreshToken }),
      id.client.refresh({ refreshToken: tokens.refreshToken }),
    ]);
    expect(outcomes(results).sort()).toEqual([Code.UNAUTHENTICATED, "ok"]);
  });

  it("refuses unknown and expired refresh tokens", async () => {
    const unknown = await rpcError(id.client.refresh({ refreshToken: "no-such-token" }));
    expect(unknown.code).toBe(Code.UNAUTHENTICATED);
    expect(unknown.message).toBe("invalid refresh token");

    const { tokens } = await id.customer();
    id.clock.advance(31 * 24 * 3600 * 1000);
    const expired = await rpcError(id.client.refresh({ refreshToken: tokens.refreshToken }));
    expect(expired.code).toBe(Code.UNAUTHENTICATED);
    expect(expired.message).toBe("invalid refresh token");
  });
});
