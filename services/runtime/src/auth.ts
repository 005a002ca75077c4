/**
 * Access-token verification, done locally by the edge and by every service against
 * identity's public keys (JWKS). Nothing trusts a header someone could set: the
 * caller's JWT travels in `authorization` and is checked everywhere it is used.
 */

import { KeyService } from "@shopmesh/gen/shop/identity/v1/keys_pb.js";
import { createLocalJWKSet, type JSONWebKeySet, errors as joseErrors, jwtVerify } from "jose";
import type { CallContext } from "./context.js";
import { PermissionDeniedError, UnauthenticatedError } from "./errors.js";
import { ExpiringMap } from "./expiring-map.js";
import { createGrpcClient } from "./grpc-client.js";

export const ROLE_CUSTOMER = "customer";
export const ROLE_ADMIN = "admin";

/** The verified caller. */
export interface Claims {
  /** User id. */
  sub: string;
  roles: string[];
  email: string;
  jti: string;
  exp: number;
}

export interface TokenVerifierOptions {
  issuer: string;
  audience: string;
  /** Fetches the current JWKS (identity's KeyService, or identity's own key store). */
  fetchJwks: () => Promise<JSONWebKeySet>;
  /** Keys are re-fetched after this long, or at once on an unknown key id. Default 5 min. */
  cacheMs?: number;
  /** Verified tokens remembered (until they expire or the keys are re-fetched). Default 10,000. */
  maxCachedTokens?: number;
}

export interface TokenVerifier {
  /** Verifies a compact JWT; throws UnauthenticatedError for anything not valid. */
  verify(token: string): Promise<Claims>;
  /** The key set as last fetched (the edge republishes it). */
  jwks(): Promise<JSONWebKeySet>;
}

/** Signing algorithm of every access token. Pinned: `none` and HS* tokens are refused. */
export const TOKEN_ALG = "EdDSA";

export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const cacheMs = options.cacheMs ?? 5 * 60_000;
  let cached:
    | { set: JSONWebKeySet; keys: ReturnType<typeof createLocalJWKSet>; at: number }
    | undefined;
  let inflight: Promise<NonNullable<typeof cached>> | undefined;
  // Re-fetch at most every few seconds on unknown kids, so bad tokens cannot hammer identity.
  let lastForced = 0;
  // A token is verified once (a signature check costs ~100 µs) and remembered until it
  // expires; the whole cache is dropped whenever the key set is fetched again, so a
  // withdrawn key stops working as soon as it would without the cache.
  const verified = new ExpiringMap<string, Claims>(options.maxCachedTokens ?? 10_000);

  const load = async (force: boolean) => {
    const now = Date.now();
    if (cached && !force && now - cached.at < cacheMs) return cached;
    if (cached && force && now - lastForced < 5_000) return cached;
    if (force) lastForced = now;
    inflight ??= options
      .fetchJwks()
      .then((set) => {
        cached = { set, keys: createLocalJWKSet(set), at: Date.now() };
        verified.clear();
        return cached;
      })
      .finally(() => {
        inflight = undefined;
      });
    return inflight;
  };

  const check = async (token: string, force: boolean): Promise<Claims> => {
    const { keys } = await load(force);
    const known = verified.get(token);
    if (known !== undefined) return known; // (an expired one is not: jwtVerify says so)
    const { payload } = await jwtVerify(token, keys, {
      algorithms: [TOKEN_ALG],
      issuer: options.issuer,
      audience: options.audience,
      requiredClaims: ["sub", "exp", "iat", "jti"],
    });
    const roles = Array.isArray(payload["roles"]) ? payload["roles"].map(String) : [];
    const claims: Claims = {
      sub: String(payload.sub),
      roles,
      email: typeof payload["email"] === "string" ? payload["email"] : "",
      jti: String(payload.jti),
      exp: Number(payload.exp),
    };
    verified.set(token, claims, claims.exp * 1000);
    return claims;
  };

  return {
    async verify(token) {
      try {
        return await check(token, false);
      } catch (err) {
        if (err instanceof joseErrors.JWKSNoMatchingKey) {
          // A key rotated since we cached the set: refresh once and retry.
          try {
            return await check(token, true);
          } catch (again) {
            throw unauthenticated(again);
          }
        }
        throw unauthenticated(err);
      }
    },
    async jwks() {
      return (await load(false)).set;
    },
  };
}

function unauthenticated(err: unknown): Error {
  if (err instanceof joseErrors.JWTExpired)
    return new UnauthenticatedError("token expired", { cause: err });
  if (err instanceof joseErrors.JOSEError)
    return new UnauthenticatedError("invalid token", { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}

/** The bearer token of an `authorization` value, or undefined. */
export function bearerToken(authorization: string | undefined): string | undefined {
  const m = /^Bearer ([A-Za-z0-9._~+/=-]+)$/i.exec(authorization?.trim() ?? "");
  return m?.[1];
}

/** Verifies the caller's token from the call's metadata; UNAUTHENTICATED when missing or bad. */
export async function authenticate(ctx: CallContext, verifier: TokenVerifier): Promise<Claims> {
  const token = bearerToken(ctx.header("authorization"));
  if (token === undefined) throw new UnauthenticatedError("missing bearer token");
  const claims = await verifier.verify(token);
  ctx.auth = claims;
  return claims;
}

export function isAdmin(claims: Claims): boolean {
  return claims.roles.includes(ROLE_ADMIN);
}

/** PERMISSION_DENIED unless the caller is an admin. */
export function requireAdmin(claims: Claims): void {
  if (!isAdmin(claims)) throw new PermissionDeniedError("admin role required");
}

/**
 * The verifier of a service that trusts identity: issuer and audience from authEnv's
 * JWT_ISSUER / JWT_AUDIENCE, keys from KeyService at IDENTITY_ADDR.
 */
export function createIdentityVerifier(config: {
  JWT_ISSUER: string;
  JWT_AUDIENCE: string;
  IDENTITY_ADDR: string;
}): TokenVerifier {
  return createTokenVerifier({
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    fetchJwks: jwksFromKeyService(config.IDENTITY_ADDR),
  });
}

/** A JWK set as KeyService's GetJwks answers it (absent members as ""). */
export function jwksResponse(jwks: JSONWebKeySet) {
  return {
    keys: jwks.keys.map((k) => ({
      kty: k.kty,
      crv: k.crv ?? "",
      x: k.x ?? "",
      kid: k.kid ?? "",
      alg: k.alg ?? "",
      use: k.use ?? "",
    })),
  };
}

/** A JWKS source backed by identity's KeyService over gRPC. */
export function jwksFromKeyService(address: string): () => Promise<JSONWebKeySet> {
  const client = createGrpcClient(KeyService, address, { timeoutMs: 3_000 });
  return async () => {
    const res = await client.getJwks({});
    return {
      keys: res.keys.map((k) => ({
        kty: k.kty,
        crv: k.crv,
        x: k.x,
        kid: k.kid,
        alg: k.alg,
        use: k.use,
      })),
    };
  };
}
