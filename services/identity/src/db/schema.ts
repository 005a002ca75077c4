/**
 * identity's tables (drizzle pg-core): users, refresh_tokens, signing_keys,
 * login_failures, and the runtime's outbox (re-exported so that identity's
 * migrations create it).
 */
import { sql } from "drizzle-orm";
import { check, index, integer, jsonb, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";
import type { JWK } from "jose";

// From the module, not the runtime's index: see main.ts.
export { outbox } from "@shopmesh/runtime/outbox.js";

/** A role as stored in `users.roles` and carried in the access token's `roles` claim. */
export type RoleName = "customer" | "admin";

export const users = pgTable(
  "users",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    /** Trimmed and lower-cased before it is stored, so the unique index is case-insensitive. */
    email: text("email").notNull().unique("users_email_unique"),
    displayName: text("display_name").notNull().default(""),
    /** argon2id PHC string. */
    passwordHash: text("password_hash").notNull(),
    roles: text("roles").array().$type<RoleName[]>().notNull().default(sql`'{customer}'::text[]`),
    // Millisecond precision, like a JS Date: the ListUsers page token carries created_at
    // through a Date, and a microsecond remainder would make the keyset skip rows.
    createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  },
  (t) => [
    // ListUsers reads newest first: a backward scan of this index is exactly
    // `order by created_at desc, id desc` (DESC NULLS FIRST, the default).
    index("users_created_at_id").on(t.createdAt, t.id),
    check("users_email_normalised", sql`${t.email} = lower(btrim(${t.email}))`),
    check("users_roles_known", sql`${t.roles} <@ array['customer', 'admin']::text[]`),
  ],
);

export const refreshTokens = pgTable(
  "refresh_tokens",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    /** Every token rotated from one login shares the family; reuse revokes the family. */
    familyId: uuid("family_id").notNull(),
    /** sha256 (hex) of the token: a database leak does not hand out usable tokens. */
    tokenHash: text("token_hash").notNull().unique("refresh_tokens_token_hash_unique"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    /** Set when the token was exchanged (rotated); presenting it again is reuse. */
    usedAt: timestamp("used_at", { withTimezone: true }),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [index("refresh_tokens_family").on(t.familyId), index("refresh_tokens_user").on(t.userId)],
);

export const signingKeys = pgTable("signing_keys", {
  /** Key id (RFC 7638 thumbprint), the `kid` header of every token it signs. */
  kid: text("kid").primaryKey(),
  privateJwk: jsonb("private_jwk").$type<JWK>().notNull(),
  publicJwk: jsonb("public_jwk").$type<JWK>().notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/** Failed logins per normalised email (known or not, so throttling reveals nothing). */
export const loginFailures = pgTable("login_failures", {
  email: text("email").primaryKey(),
  /** Attempts in the current window not followed by a successful login. */
  count: integer("count").notNull(),
  windowStart: timestamp("window_start", { withTimezone: true }).notNull(),
  /** Set when the limit is reached: logins for the email are refused until then. */
  lockedUntil: timestamp("locked_until", { withTimezone: true }),
});
