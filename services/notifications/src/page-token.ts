/**
 * Opaque ListNotifications page tokens: `encodePageToken` / `decodePageToken`.
 *
 * A token is base64url(JSON) of the keyset position, the last (created_at, id) served.
 * Keyset paging means no skipped or repeated rows when notifications arrive between
 * pages (they are newer, so they land before the first page, not inside the listing).
 * created_at is stored to the millisecond, so a Date carries it exactly.
 * Clients must treat the token as opaque.
 */
import { InvalidArgumentError } from "@shopmesh/runtime/errors.js";

/** Where the next page starts: strictly after this (created_at, id), newest first. */
export interface PageCursor {
  createdAt: Date;
  id: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function encodePageToken(cursor: PageCursor): string {
  const body = { v: 1, t: cursor.createdAt.toISOString(), i: cursor.id };
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

/** The cursor of `token`; INVALID_ARGUMENT "invalid page_token" for anything else. */
export function decodePageToken(token: string): PageCursor {
  const invalid = (why: string, cause?: unknown) =>
    new InvalidArgumentError(
      "invalid page_token",
      [{ field: "page_token", rule: why, message: why }],
      { cause },
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
  const { v, t, i } = body as Record<string, unknown>;
  if (v !== 1 || typeof t !== "string" || typeof i !== "string" || !UUID.test(i)) {
    throw invalid("malformed");
  }
  const createdAt = new Date(t);
  if (Number.isNaN(createdAt.getTime())) throw invalid("malformed");
  return { createdAt, id: i };
}
