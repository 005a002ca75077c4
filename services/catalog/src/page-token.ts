/**
 * Opaque ListProducts page tokens: `encodePageToken` / `decodePageToken`.
 *
 * A token is base64url(JSON) of the keyset position (the last (name, id) served)
 * and a hash of the listing's scope (query and include_inactive). Keyset paging
 * means no skipped or repeated rows when products are added between pages, and the
 * scope hash makes a token presented with a different query fail loudly instead of
 * silently paging through the wrong result set. Clients must treat it as opaque.
 */
import { createHash } from "node:crypto";
import { InvalidArgumentError } from "@shopmesh/runtime/errors.js";

/** Where the next page starts: strictly after this (name, id) in (name, id) order. */
export interface PageCursor {
  name: string;
  id: string;
}

/** What a token is valid for; a token only works with the scope it was issued for. */
export interface ListScope {
  query: string;
  includeInactive: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function scopeHash(scope: ListScope): string {
  return createHash("sha256")
    .update(JSON.stringify([scope.query, scope.includeInactive]))
    .digest("base64url")
    .slice(0, 16);
}

export function encodePageToken(cursor: PageCursor, scope: ListScope): string {
  const body = { v: 1, n: cursor.name, i: cursor.id, s: scopeHash(scope) };
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
  const { v, n, i, s } = body as Record<string, unknown>;
  if (v !== 1 || typeof n !== "string" || typeof i !== "string" || !UUID.test(i)) {
    throw invalid("malformed");
  }
  if (s !== scopeHash(scope)) throw invalid("issued for a different query");
  return { name: n, id: i };
}
