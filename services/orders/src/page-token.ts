/**
 * Opaque ListOrders page tokens (runtime's pageTokenCodec): the keyset position is the
 * (created_at, id) of the last order served, newest first, and a token is bound to the
 * listing's scope (whose orders, which status), so one presented with another filter
 * fails loudly.
 */
import {
  type CreatedAtCursor,
  createdAtCursor,
  pageTokenCodec,
} from "@shopmesh/runtime/page-token.js";

/** What a token is valid for: the effective user filter ("" = all) and status ("" = any). */
export interface ListScope {
  userId: string;
  status: string;
}

export const pageTokens = pageTokenCodec<CreatedAtCursor, ListScope>({
  ...createdAtCursor,
  scope: (scope) => [scope.userId, scope.status],
  mismatch: "issued for a different filter",
});
