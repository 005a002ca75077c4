/**
 * Opaque keyset page tokens for List RPCs: `pageTokenCodec(spec)` returns
 * `{ encode, decode }` for one listing.
 *
 * A token is base64url(JSON) of a version, the keyset position (the last row served,
 * as the fields the service chooses) and, for a listing with filters, a hash of its
 * scope (filters, caller's visibility). Keyset paging neither skips nor repeats rows
 * added between pages, and the scope hash makes a token presented with other filters,
 * or by another caller, fail loudly instead of silently paging through the wrong set.
 * Anything that is not a token the listing issued is INVALID_ARGUMENT "invalid
 * page_token", with the reason in the field violation. Clients must treat tokens as
 * opaque.
 */
import { createHash } from "node:crypto";
import { InvalidArgumentError } from "./errors.js";

export interface PageTokenSpec<Cursor, Scope> {
  /**
   * The cursor as the token's fields, written in this order (short keys; "v" and "s"
   * are the codec's own).
   */
  write(cursor: Cursor): Record<string, string>;
  /** The cursor of a token's fields; undefined when they are not a cursor of this listing. */
  read(fields: Record<string, unknown>): Cursor | undefined;
  /** The values a token is bound to; omit for a listing without filters. */
  scope?(scope: Scope): readonly unknown[];
  /** Why a token issued for another scope is refused, e.g. "issued for a different query". */
  mismatch?: string;
}

export interface PageTokenCodec<Cursor, Scope> {
  encode(cursor: Cursor, scope: Scope): string;
  /** The cursor of `token`; INVALID_ARGUMENT "invalid page_token" for anything else. */
  decode(token: string, scope: Scope): Cursor;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A lowercase canonical UUID string, as Postgres prints one. */
export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID.test(value);
}

/** The instant of an ISO timestamp field; undefined for anything else. */
export function readTimestamp(value: unknown): Date | undefined {
  if (typeof value !== "string") return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** The keyset position of a listing in (created_at, id) order: the last row served. */
export interface CreatedAtCursor {
  /** created_at with millisecond precision, as the columns store it. */
  createdAt: Date;
  id: string;
}

/** The fields of a (created_at, id) cursor, for `pageTokenCodec({ ...createdAtCursor })`. */
export const createdAtCursor = {
  write: (cursor: CreatedAtCursor): Record<string, string> => ({
    t: cursor.createdAt.toISOString(),
    i: cursor.id,
  }),
  read: ({ t, i }: Record<string, unknown>): CreatedAtCursor | undefined => {
    const createdAt = readTimestamp(t);
    return createdAt !== undefined && isUuid(i) ? { createdAt, id: i } : undefined;
  },
};

function scopeHash(values: readonly unknown[]): string {
  return createHash("sha256").update(JSON.stringify(values)).digest("base64url").slice(0, 16);
}

export function pageTokenCodec<Cursor, Scope = void>(
  spec: PageTokenSpec<Cursor, Scope>,
): PageTokenCodec<Cursor, Scope> {
  const mismatch = spec.mismatch ?? "issued for a different listing";
  const hash = (scope: Scope) =>
    spec.scope === undefined ? undefined : scopeHash(spec.scope(scope));

  const invalid = (why: string, cause?: unknown) =>
    new InvalidArgumentError(
      "invalid page_token",
      [{ field: "page_token", rule: why, message: why }],
      { cause },
    );

  return {
    encode(cursor, scope) {
      const body = { v: 1, ...spec.write(cursor), s: hash(scope) };
      return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
    },

    decode(token, scope) {
      // Buffer's base64url decoder skips characters it does not know; insist on the alphabet.
      if (!/^[A-Za-z0-9_-]+$/.test(token)) throw invalid("not base64url");
      let body: unknown;
      try {
        body = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
      } catch (err) {
        throw invalid("malformed", err);
      }
      if (typeof body !== "object" || body === null) throw invalid("malformed");
      const fields = body as Record<string, unknown>;
      const cursor = fields["v"] === 1 ? spec.read(fields) : undefined;
      if (cursor === undefined) throw invalid("malformed");
      if (spec.scope !== undefined && fields["s"] !== hash(scope)) throw invalid(mismatch);
      return cursor;
    },
  };
}
