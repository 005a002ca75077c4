/**
 * Gives back stock reserved for orders that were never recorded.
 *
 * PlaceOrder writes a `placements` row before ReserveStock and deletes it in the
 * transaction that records the order (place-order.ts). A row older than the timeout
 * therefore means orders stopped between the two (killed, crashed, lost its database)
 * or its compensating ReleaseStock failed: the catalog holds stock for an order that
 * does not exist. `sweepPlacements` releases each such reservation and deletes the row.
 *
 * Each row is locked (FOR UPDATE SKIP LOCKED) while its stock is released and deleted
 * in the same transaction, so replicas sweep different rows, a sweeper that dies leaves
 * the row for the next pass (ReleaseStock is idempotent), and a PlaceOrder that was only
 * slow finds its row gone when it commits: it fails with ABORTED and writes nothing.
 */

import { every } from "@shopmesh/runtime/every.js";
import type { Logger } from "@shopmesh/runtime/logger.js";
import { asc, inArray, lt, sql } from "drizzle-orm";
import type { OrdersDb } from "./db/database.js";
import { placements } from "./db/schema.js";
import { type InventoryClient, releaseStock } from "./downstream.js";

const BATCH = 50;

export interface SweepDeps {
  db: OrdersDb;
  inventory: InventoryClient;
  logger: Logger;
}

/** One pass over the placements older than `olderThanMs`; returns how many were released. */
export async function sweepPlacements(deps: SweepDeps, olderThanMs: number): Promise<number> {
  let total = 0;
  for (;;) {
    const released = await deps.db.transaction(async (tx) => {
      const rows = await tx
        .select({ orderId: placements.orderId })
        .from(placements)
        .where(lt(placements.startedAt, sql`now() - ${olderThanMs} * interval '1 millisecond'`))
        .orderBy(asc(placements.startedAt))
        .limit(BATCH)
        .for("update", { skipLocked: true });
      for (const { orderId } of rows) {
        await releaseStock(deps.inventory, orderId);
        deps.logger.warn(
          { order_id: orderId },
          "released the stock of an order that was never recorded (orphaned reservation)",
        );
      }
      if (rows.length > 0) {
        await tx.delete(placements).where(
          inArray(
            placements.orderId,
            rows.map((r) => r.orderId),
          ),
        );
      }
      return rows.length;
    });
    total += released;
    if (released < BATCH) return total;
  }
}

/** Sweeps every `everyMs` until stopped; a failed pass is logged and tried again. */
export function startPlacementSweeper(
  deps: SweepDeps,
  options: { olderThanMs: number; everyMs: number },
): { stop(): Promise<void> } {
  return every(
    options.everyMs,
    () => sweepPlacements(deps, options.olderThanMs),
    (err) => deps.logger.error({ err }, "placement sweep failed; tried again at the next pass"),
  );
}
