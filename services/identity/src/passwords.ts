/**
 * Password hashing with argon2id: `hashPassword`, `verifyPassword`, and
 * `verifyAgainstDummy`, which spends the same time as a real check when there is no
 * user to check against (so response time does not reveal whether an email exists).
 */
import { type Algorithm, hash, type Options, verify } from "@node-rs/argon2";

/**
 * 64 MiB, 3 passes, 1 lane: the second recommended option of RFC 9106 (with one lane
 * instead of four, as one request hashes on one libuv thread). About 55 ms per hash on
 * the 2-core dev machine, inside the 50–100 ms budget of an interactive login; the
 * memory cost is what makes GPU guessing expensive. Peak memory is 64 MiB times the
 * libuv pool size (UV_THREADPOOL_SIZE, 4 by default).
 */
export const ARGON2_OPTIONS: Options = {
  // Algorithm.Argon2id: the package declares a `const enum`, which verbatimModuleSyntax
  // cannot read; hashes start with `$argon2id$` (checked by the tests).
  algorithm: 2 as Algorithm,
  memoryCost: 65_536,
  timeCost: 3,
  parallelism: 1,
};

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2_OPTIONS);
}

export function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  return verify(passwordHash, password);
}

// Made on first use, with the same parameters as real hashes so it costs the same.
let dummy: Promise<string> | undefined;

/** Burns one verification's worth of time; always false. */
export async function verifyAgainstDummy(password: string): Promise<false> {
  dummy ??= hashPassword(crypto.randomUUID());
  await verify(await dummy, password);
  return false;
}
