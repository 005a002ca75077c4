/**
 * `ensureAdmin`: the admin account named by ADMIN_EMAIL / ADMIN_PASSWORD exists and
 * holds the admin role. Idempotent (runs at every start, on every replica); an
 * existing account keeps its password.
 */
import { and, eq, sql } from "drizzle-orm";
import type { IdentityDb } from "./db/database.js";
import { users } from "./db/schema.js";
import { hashPassword } from "./passwords.js";
import { createUser, findUserByEmail, normaliseEmail } from "./users.js";

export type AdminOutcome = "created" | "promoted" | "unchanged";

export async function ensureAdmin(
  db: IdentityDb,
  account: { email: string; password: string },
): Promise<AdminOutcome> {
  const email = normaliseEmail(account.email);
  if ((await findUserByEmail(db, email)) === undefined) {
    const created = await createUser(db, {
      email,
      displayName: "Administrator",
      passwordHash: await hashPassword(account.password),
      roles: ["admin", "customer"],
    });
    if (created !== undefined) return "created";
    // Registered meanwhile (another replica, or a sign-up): make sure it is an admin.
  }
  const promoted = await db
    .update(users)
    .set({ roles: sql`array_prepend('admin', ${users.roles})` })
    .where(and(eq(users.email, email), sql`not ('admin' = any(${users.roles}))`))
    .returning({ id: users.id });
  return promoted.length > 0 ? "promoted" : "unchanged";
}
