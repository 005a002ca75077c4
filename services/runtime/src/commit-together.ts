/**
 * Statements committed together: `commitTogether(db, statement)` gives a function that
 * runs `statement` once per call, and the calls made while an earlier one is still in
 * flight share one transaction — BEGIN, each of their statements, COMMIT, in one write —
 * instead of one commit each. ADR 0010.
 *
 * Made for a row that every call changes (a best-seller's stock): one statement at a time
 * from this process touches it, so its callers queue here, where a wait costs nothing,
 * instead of on PostgreSQL's row lock, where each waiter is woken, re-reads the row and
 * sleeps again; and the queue is then paid for with one commit.
 *
 * - Nothing waits when nothing is in flight: a call then runs its statement on its own
 *   (autocommit), as without this.
 * - At most one batch is in flight; what arrives meanwhile goes together next (up to
 *   32), in the order of `lockKey` when given: the key of the row each statement locks
 *   first (a product id, an order id), so that two processes' batches take their locks
 *   in the same order and cannot deadlock.
 * - Each statement is built in its caller's call context (trace, request id, logs).
 * - If anything in a batch fails, the batch rolls back and each call runs its statement
 *   again on its own, so only a call whose statement fails again sees an error. A
 *   statement therefore has to be one that fails as a whole (a constraint, a guard), so
 *   that a rolled-back batch leaves nothing behind.
 */
import { type CallContext, currentCall, runWithCall } from "./context.js";
import { type TransactionalDb, transactionEndingWith } from "./db.js";
import type { Tx } from "./outbox.js";

/** Calls per shared transaction. */
const MAX_BATCH = 32;

interface Waiting<I, R> {
  input: I;
  call: CallContext | undefined;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

export function commitTogether<I, R>(
  db: TransactionalDb,
  statement: (session: Tx, input: I) => PromiseLike<R>,
  lockKey?: (input: I) => string,
): (input: I) => Promise<R> {
  const waiting: Waiting<I, R>[] = [];
  let busy = false;

  const inCallOf = <T>(w: Waiting<I, R>, fn: () => T): T =>
    w.call === undefined ? fn() : runWithCall(w.call, fn);
  const alone = (w: Waiting<I, R>) =>
    Promise.resolve()
      .then(() => inCallOf(w, () => statement(db as unknown as Tx, w.input)))
      .then(w.resolve, w.reject);

  const run = async (batch: Waiting<I, R>[]) => {
    if (batch.length === 1) return alone(batch[0] as Waiting<I, R>);
    if (lockKey !== undefined) {
      batch.sort((a, b) => {
        const [x, y] = [lockKey(a.input), lockKey(b.input)];
        return x < y ? -1 : x > y ? 1 : 0;
      });
    }
    let results: R[];
    try {
      results = (await transactionEndingWith(db, (tx) =>
        batch.map((w) => () => inCallOf(w, () => statement(tx, w.input))),
      )) as R[];
    } catch {
      // One of them (or the transaction) failed: each runs on its own, and only a
      // statement that fails again reports its error.
      await Promise.all(batch.map(alone));
      return;
    }
    for (const [i, w] of batch.entries()) w.resolve(results[i] as R);
  };

  const pump = () => {
    if (busy || waiting.length === 0) return;
    busy = true;
    void run(waiting.splice(0, MAX_BATCH)).finally(() => {
      busy = false;
      pump();
    });
  };

  return (input) =>
    new Promise<R>((resolve, reject) => {
      waiting.push({ input, call: currentCall(), resolve, reject });
      pump();
    });
}
