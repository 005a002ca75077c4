/**
 * Login throttling per normalised email: `countLoginAttempt` (before the password is
 * checked) and `clearLoginAttempts` (after a successful login).
 *
 * The attempt is counted before the check, atomically in one upsert, so a burst of
 * concurrent guesses cannot all slip past the limit. Unknown emails are counted too,
 * so being throttled says nothing about whether an account exists.
 */
import { ResourceExhaustedError } from "@shopmesh/runtime/errors.js";
import { eq, sql } from "drizzle-orm";
import type { IdentityDb } from "./db/database.js";
import { loginFailures } from "./db/schema.js";

/** Failed attempts allowed per email and window. */
export const MAX_LOGIN_FAILURES = 5;
export const LOGIN_WINDOW_MS = 15 * 60 * 1000;

const WINDOW = sql.raw(`interval '${LOGIN_WINDOW_MS} milliseconds'`);

/**
 * Counts one login attempt for `email` at `now`. Throws ResourceExhaustedError when
 * MAX_LOGIN_FAILURES attempts already failed in the current window, whatever the
 * password: until the window (from the first failure) has passed.
 */
export async function countLoginAttempt(db: IdentityDb, email: string, now: Date): Promise<void> {
  const t = loginFailures;
  // An ISO string, not a Date: drizzle hands raw-SQL parameters to postgres.js
  // untouched, and with drizzle's pass-through timestamp serializer a Date fails the
  // query (TypeError in postgres.js).
  const at = sql`${now.toISOString()}::timestamptz`;
  const windowOpen = sql`${t.windowStart} > ${at} - ${WINDOW}`;
  const [row] = await db
    .insert(t)
    .values({ email, count: 1, windowStart: now })
    .onConflictDoUpdate({
      target: t.email,
      // Every expression reads the row as it was before this attempt.
      set: {
        count: sql`case when ${windowOpen} then ${t.count} + 1 else 1 end`,
        windowStart: sql`case when ${windowOpen} then ${t.windowStart} else ${at} end`,
        lockedUntil: sql`case when ${windowOpen} and ${t.count} + 1 >= ${MAX_LOGIN_FAILURES}
          then ${t.windowStart} + ${WINDOW} end`,
      },
    })
    .returning();
  if (row === undefined || row.count <= MAX_LOGIN_FAILURES) return;
  const until = row.lockedUntil ?? new Date(row.windowStart.getTime() + LOGIN_WINDOW_MS);
  const retryAfterSeconds = Math.max(1, Math.ceil((until.getTime() - now.getTime()) / 1000));
  throw new ResourceExhaustedError(
    "too many failed logins for this email; try again later",
    retryAfterSeconds,
  );
}

/** Forgets the failures of `email` (a successful login). */
export async function clearLoginAttempts(db: IdentityDb, email: string): Promise<void> {
  await db.delete(loginFailures).where(eq(loginFailures.email, email));
}
