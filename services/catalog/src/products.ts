/**
 * Pieces shared by the catalog's handlers: `productToProto` (row → message) and
 * `noteStockChange` (the optional StockLow event).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ProductSchema } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { StockLowSchema } from "@shopmesh/gen/shop/catalog/v1/events_pb.js";
import { enqueueEvent, type Tx } from "@shopmesh/runtime/outbox.js";
import type { ProductRow } from "./db/schema.js";

export const STOCK_LOW_SUBJECT = "shop.catalog.stock_low";

export function productToProto(row: ProductRow): MessageInitShape<typeof ProductSchema> {
  return {
    id: row.id,
    sku: row.sku,
    name: row.name,
    description: row.description,
    price: { currencyCode: row.currencyCode, amount: row.priceAmount },
    stock: row.stock,
    active: row.active,
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
  };
}

/**
 * Writes StockLow, in the caller's transaction, when stock crosses the threshold
 * downwards. Only on the crossing: a product sitting low does not emit an event on
 * every further sale.
 */
export async function noteStockChange(
  tx: Tx,
  product: { id: string; sku: string; stock: number },
  before: number,
  threshold: number | undefined,
): Promise<void> {
  if (threshold === undefined || !(before > threshold && product.stock <= threshold)) return;
  await enqueueEvent(tx, STOCK_LOW_SUBJECT, StockLowSchema, {
    productId: product.id,
    sku: product.sku,
    stock: product.stock,
  });
}
