/**
 * Tokens: `signAccessToken` (JWT, EdDSA, 15 minutes) and `newRefreshToken` /
 * `hashRefreshToken` (opaque 256-bit random tokens, stored only as their sha256).
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { TOKEN_ALG } from "@shopmesh/runtime/auth.js";
import { SignJWT } from "jose";
import type { RoleName } from "./db/schema.js";
import type { SigningKeys } from "./keys.js";

export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60;
export const REFRESH_TOKEN_TTL_MS = 30 * 24 * 60 * 60 * 1000;

export interface TokenSettings {
  keys: SigningKeys;
  issuer: string;
  audience: string;
}

export interface AccessToken {
  token: string;
  expiresAt: Date;
}

/** An access token for `user`, issued at `now`. */
export async function signAccessToken(
  settings: TokenSettings,
  user: { id: string; email: string; roles: RoleName[] },
  now: Date,
): Promise<AccessToken> {
  const iat = Math.floor(now.getTime() / 1000);
  const exp = iat + ACCESS_TOKEN_TTL_SECONDS;
  const token = await new SignJWT({ roles: user.roles, email: user.email })
    .setProtectedHeader({ alg: TOKEN_ALG, kid: settings.keys.kid, typ: "JWT" })
    .setIssuer(settings.issuer)
    .setAudience(settings.audience)
    .setSubject(user.id)
    .setJti(randomUUID())
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(settings.keys.privateKey);
  return { token, expiresAt: new Date(exp * 1000) };
}

/** A new refresh token: the value for the client, and the hash to store. */
export function newRefreshToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString("base64url");
  return { token, hash: hashRefreshToken(token) };
}

/**
 * sha256, hex. No salt or slow hash needed: the token is 256 random bits, so the
 * hash cannot be reversed by guessing, and it must be found by an index lookup.
 */
export function hashRefreshToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
