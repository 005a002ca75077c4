/**
 * Test support shared by every service's tests: a fresh database per test file on the
 * real PostgreSQL (PG_URL, set by the global setup), and access tokens signed by a
 * test key, for services tested without identity running.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair, type JSONWebKeySet, SignJWT } from "jose";
import { TOKEN_ALG } from "./auth.js";
import { dropServiceDatabase, ensureServiceDatabase } from "./db.js";

export async function createTestDatabase(
  prefix: string,
): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = process.env["PG_URL"];
  if (!adminUrl) throw new Error("PG_URL is not set: run tests through vitest (global setup)");
  const name = `${prefix}_${randomBytes(4).toString("hex")}`;
  const url = await ensureServiceDatabase(adminUrl, name, randomBytes(12).toString("hex"));
  return { url, drop: () => dropServiceDatabase(adminUrl, name) };
}

export const TEST_ISSUER = "shopmesh-identity";
export const TEST_AUDIENCE = "shopmesh";

export interface TestKeys {
  fetchJwks(): Promise<JSONWebKeySet>;
  /** A valid access token for `sub` with `roles`. */
  sign(sub: string, roles: string[], email?: string): Promise<string>;
}

export async function createTestKeys(): Promise<TestKeys> {
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_ALG, { crv: "Ed25519" });
  const kid = randomUUID();
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: TOKEN_ALG, use: "sig" };
  return {
    fetchJwks: async () => ({ keys: [jwk] }),
    sign: (sub, roles, email = `${sub}@example.com`) =>
      new SignJWT({ roles, email })
        .setProtectedHeader({ alg: TOKEN_ALG, kid })
        .setIssuer(TEST_ISSUER)
        .setAudience(TEST_AUDIENCE)
        .setSubject(sub)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime("15m")
        .sign(privateKey),
  };
}
