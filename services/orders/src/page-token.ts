/**
 * Opaque ListOrders page tokens: `encodePageToken` / `decodePageToken`.
 *
 * A token is base64url(JSON) of the keyset position — the (created_at, id) of the
 * last order served, newest first — and a hash of the listing's scope (whose orders,
 * which status). Keyset paging neither skips nor repeats orders placed between
 * pages, and a token presented with another filter fails loudly instead of paging
 * through the wrong list. Clients must treat it as opaque.
 */
import { createHash } from "node:crypto";
import { InvalidArgumentError } from "@shopmesh/runtime/errors.js";

/** The next page starts strictly after (older than) this order. */
export interface PageCursor {
  /** created_at with millisecond precision: the column stores exactly that. */
  createdAt: Date;
  id: string;
}

/** What a token is valid for: the effective user filter ("" = all) and status ("" = any). */
export interface ListScope {
  userId: string;
  status: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function scopeHash(scope: ListScope): string {
  return createHash("sha256")
    .update(JSON.stringify([scope.userId, scope.status]))
    .digest("base64url")
    .slice(0, 16);
}

export function encodePageToken(cursor: PageCursor, scope: ListScope): string {
  const body = { v: 1, t: cursor.createdAt.toISOString(), i: cursor.id, s: scopeHash(scope) };
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

/** The cursor of `token`; INVALID_ARGUMENT "invalid page_token" for anything else. */
export function decodePageToken(token: string, scope: ListScope): PageCursor {
  const invalid = (why: string, cause?: unknown) =>
    new InvalidArgumentError(
      "invalid page_token",
      [{ field: "page_token", rule: why, message: why }],
      {
        cause,
      },
    );
  // Buffer's base64url decoder skips characters it does not know; insist on the alphabet.
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw invalid("not base64url");
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch (err) {
    throw invalid("malformed", err);
  }
  if (typeof body !== "object" || body === null) throw invalid("malformed");
  const { v, t, i, s } = body as Record<string, unknown>;
  const createdAt = new Date(typeof t === "string" ? t : Number.NaN);
  if (v !== 1 || Number.isNaN(createdAt.getTime()) || typeof i !== "string" || !UUID.test(i)) {
    throw invalid("malformed");
  }
  if (s !== scopeHash(scope)) throw invalid("issued for a different filter");
  return { createdAt, id: i };
}
