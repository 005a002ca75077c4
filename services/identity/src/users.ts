/**
 * Users: `normaliseEmail`, `createUser` (the row and its UserRegistered event in one
 * transaction), `findUserById`, `findUserByEmail` and `toUserProto`.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { UserRegisteredSchema } from "@shopmesh/gen/shop/identity/v1/events_pb.js";
import { Role, type UserSchema } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { pgErrorCode, reusable, UNIQUE_VIOLATION } from "@shopmesh/runtime/db.js";
import { enqueueEvent } from "@shopmesh/runtime/outbox.js";
import { eq, sql } from "drizzle-orm";
import type { IdentityDb } from "./db/database.js";
import { type RoleName, users } from "./db/schema.js";

export type UserRow = typeof users.$inferSelect;

export const USER_REGISTERED_SUBJECT = "shop.identity.user_registered";

/** Emails are compared and stored trimmed and lower-cased. */
export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

export interface NewUser {
  email: string;
  displayName: string;
  passwordHash: string;
  roles: RoleName[];
}

/**
 * Inserts the user and enqueues UserRegistered in the same transaction. Returns
 * undefined when the email is taken: the unique index decides, so two concurrent
 * registrations of one email cannot both succeed.
 */
export async function createUser(db: IdentityDb, user: NewUser): Promise<UserRow | undefined> {
  const email = normaliseEmail(user.email);
  try {
    return await db.transaction(async (tx) => {
      const [row] = await tx
        .insert(users)
        .values({ ...user, email })
        .returning();
      if (row === undefined) throw new Error("insert returned no row");
      await enqueueEvent(tx, USER_REGISTERED_SUBJECT, UserRegisteredSchema, {
        userId: row.id,
        email: row.email,
        displayName: row.displayName,
      });
      return row;
    });
  } catch (err) {
    if (isUniqueViolation(err)) return undefined;
    throw err;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function findUserById(db: IdentityDb, id: string): Promise<UserRow | undefined> {
  // A token's `sub` is not validated like a request field; Postgres would reject a non-UUID.
  if (!UUID.test(id)) return undefined;
  const [row] = await userById(db, { id });
  return row;
}

/**
 * The query behind GetUser and GetMe (orders calls GetUser for every order), built once
 * rather than per call: drizzle's query building was 12 % of identity's CPU at saga load.
 */
const userById = reusable((db) =>
  db
    .select()
    .from(users)
    .where(eq(users.id, sql.placeholder("id")))
    .prepare("identity_user_by_id"),
);

export async function findUserByEmail(db: IdentityDb, email: string): Promise<UserRow | undefined> {
  const [row] = await db
    .select()
    .from(users)
    .where(eq(users.email, normaliseEmail(email)));
  return row;
}

const roleEnum: Record<RoleName, Role> = {
  customer: Role.CUSTOMER,
  admin: Role.ADMIN,
};

/** The wire form of a user: never the password hash. */
export function toUserProto(row: UserRow): MessageInitShape<typeof UserSchema> {
  return {
    id: row.id,
    email: row.email,
    displayName: row.displayName,
    roles: row.roles.map((r) => roleEnum[r] ?? Role.UNSPECIFIED),
    createTime: timestampFromDate(row.createdAt),
  };
}

/** Postgres unique_violation (23505), whether drizzle wrapped the driver's error or not. */
export function isUniqueViolation(err: unknown): boolean {
  return pgErrorCode(err)?.code === UNIQUE_VIOLATION;
}
