/**
 * The Ed25519 key identity signs access tokens with, and the JWKS that verifies them.
 *
 * Exports `loadSigningKeys`: the key from JWT_PRIVATE_JWK when given (a cluster
 * secret shared by every replica), else the newest key in `signing_keys`, created on
 * first start; and `parsePrivateJwk`, the validation config.ts runs on that variable.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
} from "node:crypto";
import { TOKEN_ALG } from "@shopmesh/runtime/auth.js";
import { desc, sql } from "drizzle-orm";
import { calculateJwkThumbprint, type JSONWebKeySet, type JWK } from "jose";
import type { IdentityDb } from "./db/database.js";
import { signingKeys } from "./db/schema.js";

export interface SigningKeys {
  /** Key id of the signing key: the `kid` header of every token it signs. */
  readonly kid: string;
  /** Never leaves the process. */
  readonly privateKey: KeyObject;
  /** The public keys that verify identity's tokens (what KeyService.GetJwks serves). */
  jwks(): Promise<JSONWebKeySet>;
}

// Any constant works; it only has to be the same for every replica (and differ
// from the runtime's migration lock).
const KEY_INIT_LOCK = 0x1d3e_7a11;

/**
 * The signing key: from `privateJwk` (parsed JWT_PRIVATE_JWK) when given, else from
 * the database, created there if none exists yet.
 */
export async function loadSigningKeys(
  db: IdentityDb,
  options: { privateJwk?: JWK | undefined } = {},
): Promise<SigningKeys> {
  if (options.privateJwk !== undefined) {
    const key = fromPrivateJwk(options.privateJwk);
    const jwks = { keys: [key.publicJwk] };
    return { kid: key.kid, privateKey: key.privateKey, jwks: async () => jwks };
  }
  const stored = await ensureStoredKey(db);
  const key = fromPrivateJwk(stored.privateJwk);
  return {
    kid: key.kid,
    privateKey: key.privateKey,
    // Read on every call (the verifiers cache it): a key added by another replica or
    // by an operator rotating keys is served without a restart.
    async jwks() {
      const rows = await db
        .select({ publicJwk: signingKeys.publicJwk })
        .from(signingKeys)
        .orderBy(desc(signingKeys.createdAt));
      return { keys: rows.map((r) => r.publicJwk) };
    },
  };
}

/**
 * The newest stored key, or a new one. Replicas starting together serialise on an
 * advisory lock, so exactly one of them creates the key and the others read it.
 */
async function ensureStoredKey(db: IdentityDb): Promise<typeof signingKeys.$inferSelect> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${KEY_INIT_LOCK})`);
    const newest = () =>
      tx.select().from(signingKeys).orderBy(desc(signingKeys.createdAt)).limit(1);
    const [existing] = await newest();
    if (existing !== undefined) return existing;
    const { privateKey } = generateKeyPairSync("ed25519");
    const privateJwk = privateKey.export({ format: "jwk" }) as JWK;
    const kid = await calculateJwkThumbprint(publicPart(privateJwk));
    await tx
      .insert(signingKeys)
      .values({
        kid,
        privateJwk: { ...privateJwk, kid, alg: TOKEN_ALG },
        publicJwk: publicJwk(privateKey, kid),
      })
      .onConflictDoNothing();
    const [created] = await newest();
    if (created === undefined) throw new Error("signing key vanished after insert");
    return created;
  });
}

function fromPrivateJwk(jwk: JWK): { kid: string; privateKey: KeyObject; publicJwk: JWK } {
  if (!jwk.kid) throw new Error("signing key has no kid");
  const privateKey = createPrivateKey({ key: jwk as JsonWebKey, format: "jwk" });
  // The public half is derived from `d`, never trusted from the JWK's own `x`.
  return { kid: jwk.kid, privateKey, publicJwk: publicJwk(privateKey, jwk.kid) };
}

function publicJwk(privateKey: KeyObject, kid: string): JWK {
  const { kty, crv, x } = createPublicKey(privateKey).export({ format: "jwk" });
  return { kty, crv, x, kid, alg: TOKEN_ALG, use: "sig" };
}

function publicPart(jwk: JWK): JWK {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
}

/**
 * Parses JWT_PRIVATE_JWK: an Ed25519 private JWK (kty OKP, crv Ed25519, d) with a
 * kid. Throws with a message that never contains the key material.
 */
export function parsePrivateJwk(raw: string): JWK {
  let jwk: unknown;
  try {
    jwk = JSON.parse(raw);
  } catch {
    throw new Error("must be a JSON Web Key (not valid JSON)");
  }
  const k = (typeof jwk === "object" && jwk !== null ? jwk : {}) as Record<string, unknown>;
  if (k["kty"] !== "OKP" || k["crv"] !== "Ed25519") {
    throw new Error("must be an Ed25519 key (kty OKP, crv Ed25519)");
  }
  if (typeof k["d"] !== "string" || k["d"] === "") throw new Error("must be a private key (d)");
  if (typeof k["kid"] !== "string" || k["kid"] === "") throw new Error("must have a kid");
  try {
    createPrivateKey({ key: k as JsonWebKey, format: "jwk" });
  } catch {
    throw new Error("is not a usable Ed25519 private key");
  }
  return k as JWK;
}
