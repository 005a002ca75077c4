/**
 * Opaque ListProducts page tokens (runtime's pageTokenCodec): the keyset position is
 * the last (name, id) served, and a token is bound to the listing's scope (query and
 * include_inactive), so one presented with a different query fails loudly.
 */
import { isUuid, pageTokenCodec } from "@shopmesh/runtime/page-token.js";

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

export const pageTokens = pageTokenCodec<PageCursor, ListScope>({
  write: (cursor) => ({ n: cursor.name, i: cursor.id }),
  read: ({ n, i }) => (typeof n === "string" && isUuid(i) ? { name: n, id: i } : undefined),
  scope: (scope) => [scope.query, scope.includeInactive],
  mismatch: "issued for a different query",
});
