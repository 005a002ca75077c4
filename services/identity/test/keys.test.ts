/**
 * Signing keys: the JWKS served by KeyService verifies identity's tokens, replicas
 * starting together create one key, and JWT_PRIVATE_JWK replaces the stored key.
 */
import { generateKeyPairSync } from "node:crypto";
import { TOKEN_ALG } from "@shopmesh/runtime";
import { createTestDatabase, TEST_AUDIENCE, TEST_ISSUER } from "@shopmesh/runtime/testing.js";
import { createLocalJWKSet, decodeProtectedHeader, type JWK, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openIdentityDatabase } from "../src/db/database.js";
import { signingKeys } from "../src/db/schema.js";
import { loadSigningKeys, parsePrivateJwk } from "../src/keys.js";
import { type Identity, startIdentity } from "./support.js";

let id: Identity;

beforeAll(async () => {
  id = await startIdentity();
});
afterAll(async () => {
  await id?.close();
});

describe("KeyService", () => {
  it("serves a key whose kid signs the access tokens, and that verifies them", async () => {
    const { tokens } = await id.customer();
    const { keys } = await id.keyClient.getJwks({});
    expect(keys).toHaveLength(1);
    const [key] = keys;
    expect(key).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
    expect(decodeProtectedHeader(tokens.accessToken).kid).toBe(key?.kid);
    // Public parts only.
    expect(Object.keys(key ?? {})).not.toContain("d");

    const jwks = createLocalJWKSet({
      keys: keys.map(({ kty, crv, x, kid, alg }) => ({ kty, crv, x, kid, alg })),
    });
    const { payload } = await jwtVerify(tokens.accessToken, jwks, {
      issuer: TEST_ISSUER,
      audience: TEST_AUDIENCE,
      algorithms: [TOKEN_ALG],
    });
    expect(payload.roles).toEqual(["customer"]);
  });
});

describe("stored signing key", () => {
  it("is created once when several replicas start together, and kept across restarts", async () => {
    const testDb = await createTestDatabase("identity_keys");
    const replicas = await Promise.all(
      [1, 2, 3, 4].map(() => openIdentityDatabase(testDb.url, { max: 2 })),
    );
    try {
      const loaded = await Promise.all(replicas.map((r) => loadSigningKeys(r.db)));
      const kids = new Set(loaded.map((k) => k.kid));
      expect(kids.size).toBe(1);
      const first = replicas[0];
      if (first === undefined) throw new Error("no replica");
      expect(await first.db.select().from(signingKeys)).toHaveLength(1);

      const restarted = await loadSigningKeys(first.db);
      expect(restarted.kid).toBe(loaded[0]?.kid);
      expect((await restarted.jwks()).keys.map((k) => k.kid)).toEqual([restarted.kid]);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
      await testDb.drop();
    }
  });
});

describe("JWT_PRIVATE_JWK", () => {
  const clusterKey = () => {
    const jwk = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" }) as JWK;
    return { ...jwk, kid: "cluster-1" };
  };

  it("signs with the given key and serves its public half, derived from d", async () => {
    const jwk = clusterKey();
    const other = clusterKey();
    // A wrong `x` in the secret must not end up in the JWKS.
    const keys = await loadSigningKeys(id.db, { privateJwk: { ...jwk, x: other.x } });
    expect(keys.kid).toBe("cluster-1");
    expect((await keys.jwks()).keys).toEqual([
      { kty: "OKP", crv: "Ed25519", x: jwk.x, kid: "cluster-1", alg: "EdDSA", use: "sig" },
    ]);
  });

  it.each([
    ["not JSON", "{nope", /not valid JSON/],
    ["an RSA key", JSON.stringify({ kty: "RSA", n: "x", e: "AQAB", d: "secret-d" }), /Ed25519/],
    ["a public key", JSON.stringify({ kty: "OKP", crv: "Ed25519", x: "abc", kid: "k" }), /private/],
    ["a key without kid", JSON.stringify({ ...clusterKey(), kid: undefined }), /kid/],
    [
      "a broken key",
      JSON.stringify({ kty: "OKP", crv: "Ed25519", d: "secret-d", kid: "k" }),
      /usable/,
    ],
  ])("refuses %s without echoing it", (_name, raw, message) => {
    const err = (() => {
      try {
        parsePrivateJwk(raw);
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err?.message).toMatch(message);
    expect(err?.message).not.toContain("secret-d");
  });
});
