/**
 * identity's RPC handlers: `createIdentityService(deps)` returns the IdentityService
 * (Register, Login, Refresh, GetMe, GetUser, ListUsers) and KeyService (GetJwks)
 * implementations, and both as registrations for createGrpcServer.
 */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  IdentityService,
  type LoginResponseSchema,
} from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { KeyService } from "@shopmesh/gen/shop/identity/v1/keys_pb.js";
import {
  authenticate,
  createTokenVerifier,
  isAdmin,
  jwksResponse,
  requireAdmin,
} from "@shopmesh/runtime/auth.js";
import {
  AlreadyExistsError,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
} from "@shopmesh/runtime/errors.js";
import {
  type ServiceImpl,
  type ServiceRegistration,
  serve,
} from "@shopmesh/runtime/grpc-server.js";
import { createdAtCursor, pageTokenCodec } from "@shopmesh/runtime/page-token.js";
import { and, desc, eq, isNull, sql } from "drizzle-orm";
import type { IdentityDb } from "./db/database.js";
import { refreshTokens, users } from "./db/schema.js";
import type { SigningKeys } from "./keys.js";
import { hashPassword, verifyAgainstDummy, verifyPassword } from "./passwords.js";
import { clearLoginAttempts, countLoginAttempt } from "./throttle.js";
import {
  ACCESS_TOKEN_TTL_SECONDS,
  hashRefreshToken,
  newRefreshToken,
  REFRESH_TOKEN_TTL_MS,
  signAccessToken,
} from "./tokens.js";
import {
  createUser,
  findUserByEmail,
  findUserById,
  normaliseEmail,
  toUserProto,
  type UserRow,
} from "./users.js";

export interface IdentityServiceDeps {
  db: IdentityDb;
  keys: SigningKeys;
  issuer: string;
  audience: string;
  /** The clock. Tests move it to pass a throttling window or a token's expiry. */
  now?: () => Date;
}

export interface IdentityHandlers {
  identity: ServiceImpl<typeof IdentityService>;
  keys: ServiceImpl<typeof KeyService>;
  /** Both services, for createGrpcServer({ services }). */
  registrations: ServiceRegistration[];
}

/** One message for a wrong password and an unknown email: the caller cannot tell them apart. */
export const INVALID_CREDENTIALS = "invalid email or password";

const DEFAULT_PAGE_SIZE = 20;
const MAX_PAGE_SIZE = 100;

/** ListUsers page tokens: the keyset (created_at, id) of the last user on the page. */
const pageTokens = pageTokenCodec(createdAtCursor);

/** The body of LoginResponse and RefreshResponse (same fields, different messages). */
type TokenPair = Omit<MessageInitShape<typeof LoginResponseSchema>, "$typeName">;

export function createIdentityService(deps: IdentityServiceDeps): IdentityHandlers {
  const { db } = deps;
  const now = deps.now ?? (() => new Date());
  const tokenSettings = { keys: deps.keys, issuer: deps.issuer, audience: deps.audience };
  // Our own tokens are verified against our own key store: no gRPC call to ourselves.
  const verifier = createTokenVerifier({
    issuer: deps.issuer,
    audience: deps.audience,
    fetchJwks: () => deps.keys.jwks(),
  });

  /** A new access token, and a new refresh token in `familyId` stored through `tx`. */
  async function issueTokens(
    tx: Pick<IdentityDb, "insert">,
    user: UserRow,
    familyId: string,
    at: Date,
  ): Promise<TokenPair> {
    const refresh = newRefreshToken();
    await tx.insert(refreshTokens).values({
      userId: user.id,
      familyId,
      tokenHash: refresh.hash,
      createdAt: at,
      expiresAt: new Date(at.getTime() + REFRESH_TOKEN_TTL_MS),
    });
    const access = await signAccessToken(tokenSettings, user, at);
    return {
      accessToken: access.token,
      refreshToken: refresh.token,
      tokenType: "Bearer",
      expiresIn: ACCESS_TOKEN_TTL_SECONDS,
      accessTokenExpireTime: timestampFromDate(access.expiresAt),
      user: toUserProto(user),
    };
  }

  const identity: ServiceImpl<typeof IdentityService> = {
    async register(req) {
      const user = await createUser(db, {
        email: req.email,
        displayName: req.displayName.trim(),
        passwordHash: await hashPassword(req.password),
        roles: ["customer"],
      });
      if (user === undefined) throw new AlreadyExistsError("email already registered");
      return { user: toUserProto(user) };
    },

    async login(req) {
      const email = normaliseEmail(req.email);
      const at = now();
      await countLoginAttempt(db, email, at);
      const user = await findUserByEmail(db, email);
      // Without a user, still spend one verification's time: timing must not reveal
      // whether the email is registered.
      const ok =
        user === undefined
          ? await verifyAgainstDummy(req.password)
          : await verifyPassword(user.passwordHash, req.password);
      if (user === undefined || !ok) throw new UnauthenticatedError(INVALID_CREDENTIALS);
      await clearLoginAttempts(db, email);
      // A login starts a new refresh token family.
      return issueTokens(db, user, randomUUID(), at);
    },

    async refresh(req, ctx) {
      const at = now();
      const tokenHash = hashRefreshToken(req.refreshToken);
      // The outcome leaves the transaction as a value, so a detected reuse commits its
      // revocation before the call fails.
      const outcome = await db.transaction(async (tx) => {
        // The row lock makes concurrent refreshes of one token take turns: the second
        // sees it used.
        const [token] = await tx
          .select()
          .from(refreshTokens)
          .where(eq(refreshTokens.tokenHash, tokenHash))
          .for("update");
        if (token === undefined) return { kind: "invalid" } as const;
        if (token.usedAt !== null) {
          // A rotated token came back: it was copied. Whoever holds the family's
          // current token may be the thief, so the whole family goes.
          await tx
            .update(refreshTokens)
            .set({ revokedAt: at })
            .where(
              and(eq(refreshTokens.familyId, token.familyId), isNull(refreshTokens.revokedAt)),
            );
          return { kind: "reuse", userId: token.userId, familyId: token.familyId } as const;
        }
        if (token.revokedAt !== null || token.expiresAt <= at) return { kind: "invalid" } as const;
        const [user] = await tx.select().from(users).where(eq(users.id, token.userId));
        if (user === undefined) return { kind: "invalid" } as const;
        await tx.update(refreshTokens).set({ usedAt: at }).where(eq(refreshTokens.id, token.id));
        return { kind: "ok", pair: await issueTokens(tx, user, token.familyId, at) } as const;
      });
      switch (outcome.kind) {
        case "ok":
          return outcome.pair;
        case "reuse":
          ctx.logger.warn(
            { user_id: outcome.userId, family_id: outcome.familyId },
            "refresh token reuse: token family revoked",
          );
          throw new UnauthenticatedError("refresh token reuse detected");
        default:
          throw new UnauthenticatedError("invalid refresh token");
      }
    },

    async getMe(_req, ctx) {
      const claims = await authenticate(ctx, verifier);
      const user = await findUserById(db, claims.sub);
      if (user === undefined) throw new NotFoundError("user not found");
      return { user: toUserProto(user) };
    },

    async getUser(req, ctx) {
      const claims = await authenticate(ctx, verifier);
      // Checked before the lookup, so a customer cannot probe which ids exist.
      if (claims.sub !== req.userId && !isAdmin(claims)) {
        throw new PermissionDeniedError("only the user themself or an admin may read a user");
      }
      const user = await findUserById(db, req.userId);
      if (user === undefined) throw new NotFoundError(`user ${req.userId} not found`);
      return { user: toUserProto(user) };
    },

    async listUsers(req, ctx) {
      requireAdmin(await authenticate(ctx, verifier));
      const pageSize = Math.min(req.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
      const after = req.pageToken === "" ? undefined : pageTokens.decode(req.pageToken);
      const rows = await db
        .select()
        .from(users)
        .where(
          after === undefined
            ? undefined
            : sql`(${users.createdAt}, ${users.id}) < (${after.createdAt.toISOString()}::timestamptz, ${after.id}::uuid)`,
        )
        .orderBy(desc(users.createdAt), desc(users.id))
        .limit(pageSize + 1);
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      return {
        users: page.map(toUserProto),
        nextPageToken: rows.length > pageSize && last !== undefined ? pageTokens.encode(last) : "",
      };
    },
  };

  const keyService: ServiceImpl<typeof KeyService> = {
    async getJwks() {
      return jwksResponse(await deps.keys.jwks());
    },
  };

  return {
    identity,
    keys: keyService,
    registrations: [serve(IdentityService, identity), serve(KeyService, keyService)],
  };
}
