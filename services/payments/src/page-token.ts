/**
 * Opaque ListPayments page tokens (runtime's pageTokenCodec): the cursor is the id of
 * the last payment served. The next page starts strictly after that payment in
 * (created_at, id) descending order, read from the row itself so no timestamp
 * precision is lost in the token. A token is bound to the listing's scope (filters and
 * the caller's visibility), so one presented with other filters, or by another caller,
 * fails loudly.
 */
import { isUuid, pageTokenCodec } from "@shopmesh/runtime/page-token.js";

/** What a token is valid for; empty strings mean "no filter". */
export interface ListScope {
  orderId: string;
  userId: string;
  /** The user a customer is limited to; empty for an admin. */
  visibleTo: string;
}

/** The cursor is the last payment id of the previous page. */
export const pageTokens = pageTokenCodec<string, ListScope>({
  write: (lastId) => ({ i: lastId }),
  read: ({ i }) => (isUuid(i) ? i : undefined),
  scope: (scope) => [scope.orderId, scope.userId, scope.visibleTo],
  mismatch: "issued for a different listing",
});
