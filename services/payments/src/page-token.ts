/**
 * Opaque ListPayments page tokens: `encodePageToken` / `decodePageToken`.
 *
 * A token is base64url(JSON) of the id of the last payment served and a hash of the
 * listing's scope (filters and the caller's visibility). The next page starts strictly
 * after that payment in (created_at, id) descending order, read from the row itself so
 * no timestamp precision is lost in the token. The scope hash makes a token presented
 * with other filters, or by another caller, fail loudly instead of paging through the
 * wrong set. Clients must treat it as opaque.
 */
import { createHash } from "node:crypto";
import { InvalidArgumentError } from "@shopmesh/runtime/errors.js";

/** What a token is valid for; empty strings mean "no filter". */
export interface ListScope {
  orderId: string;
  userId: string;
  /** The user a customer is limited to; empty for an admin. */
  visibleTo: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function scopeHash(scope: ListScope): string {
  return createHash("sha256")
    .update(JSON.stringify([scope.orderId, scope.userId, scope.visibleTo]))
    .digest("base64url")
    .slice(0, 16);
}

export function encodePageToken(lastId: string, scope: ListScope): string {
  const body = { v: 1, i: lastId, s: scopeHash(scope) };
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

/** The last payment id of the previous page; INVALID_ARGUMENT "invalid page_token" otherwise. */
export function decodePageToken(token: string, scope: ListScope): string {
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
  const { v, i, s } = body as Record<string, unknown>;
  if (v !== 1 || typeof i !== "string" || !UUID.test(i)) throw invalid("malformed");
  if (s !== scopeHash(scope)) throw invalid("issued for a different listing");
  return i;
}
