import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair, type JWK, SignJWT, UnsecuredJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { createTokenVerifier, UnauthenticatedError } from "../src/index.js";

const issuer = "shopmesh-identity";
const audience = "shopmesh";
type Key = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
let signKey: Key;
let foreignKey: Key;
let publicJwk: JWK;
let fetches = 0;

beforeAll(async () => {
  const pair = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  signKey = pair.privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
  foreignKey = (await generateKeyPair("EdDSA", { crv: "Ed25519" })).privateKey;
});

const verifier = () =>
  createTokenVerifier({
    issuer,
    audience,
    fetchJwks: async () => {
      fetches++;
      return { keys: [publicJwk] };
    },
  });

function token(o: { key?: Key; aud?: string; exp?: string | number; kid?: string } = {}) {
  return new SignJWT({ roles: ["customer"], email: "a@b.co" })
    .setProtectedHeader({ alg: "EdDSA", kid: o.kid ?? "k1" })
    .setIssuer(issuer)
    .setAudience(o.aud ?? audience)
    .setSubject("user-1")
    .setJti(randomUUID())
    .setIssuedAt()
    .setExpirationTime(o.exp ?? "15m")
    .sign(o.key ?? signKey);
}

describe("token verification", () => {
  it("remembers a verified token only until it expires", async () => {
    const v = verifier();
    const shortLived = await token({ exp: Math.floor(Date.now() / 1000) + 2 });
    expect((await v.verify(shortLived)).sub).toBe("user-1");
    expect((await v.verify(shortLived)).sub).toBe("user-1"); // from the cache
    // A token differing in one signature byte is not taken for the cached one.
    // (The second-to-last character carries six whole signature bits; the last one has padding bits.)
    const flipped = shortLived.at(-2) === "A" ? "B" : "A";
    const tampered = `${shortLived.slice(0, -2)}${flipped}${shortLived.slice(-1)}`;
    expect(tampered).not.toBe(shortLived);
    await expect(v.verify(tampered)).rejects.toThrow(/invalid token/);
    await new Promise((r) => setTimeout(r, 2_100));
    await expect(v.verify(shortLived)).rejects.toThrow(/expired/);
  });

  it("accepts a good token and returns its claims", async () => {
    const claims = await verifier().verify(await token());
    expect(claims).toMatchObject({ sub: "user-1", roles: ["customer"], email: "a@b.co" });
  });

  it.each([
    ["expired", () => token({ exp: Math.floor(Date.now() / 1000) - 60 }), /expired/],
    ["signed by a foreign key", () => token({ key: foreignKey }), /invalid token/],
    ["for another audience", () => token({ aud: "someone-else" }), /invalid token/],
    ["with an unknown key id", () => token({ kid: "nope" }), /invalid token/],
    [
      "alg none",
      async () =>
        new UnsecuredJWT({ roles: ["admin"] })
          .setIssuer(issuer)
          .setAudience(audience)
          .setSubject("user-1")
          .setJti("j")
          .setIssuedAt()
          .setExpirationTime("15m")
          .encode(),
      /invalid token/,
    ],
    ["garbage", async () => "not.a.jwt", /invalid token/],
  ])("rejects a token %s", async (_name, make, message) => {
    const err = await verifier()
      .verify(await make())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnauthenticatedError);
    expect((err as Error).message).toMatch(message);
  });

  it("caches the key set", async () => {
    const v = verifier();
    const before = fetches;
    await v.verify(await token());
    await v.verify(await token());
    expect(fetches - before).toBe(1);
  });
});
