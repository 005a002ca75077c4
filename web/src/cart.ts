/** The cart: product lines kept in memory for this tab. */
import type { Product } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";

export interface CartLine {
  product: Product;
  quantity: number;
}

const lines = new Map<string, CartLine>();
const listeners = new Set<() => void>();
const changed = () => {
  for (const l of listeners) l();
};

export const cart = {
  lines: () => [...lines.values()],
  count: () => [...lines.values()].reduce((n, l) => n + l.quantity, 0),
  add(product: Product, quantity = 1) {
    const line = lines.get(product.id);
    lines.set(product.id, { product, quantity: (line?.quantity ?? 0) + quantity });
    changed();
  },
  set(productId: string, quantity: number) {
    const line = lines.get(productId);
    if (line === undefined) return;
    if (quantity <= 0) lines.delete(productId);
    else line.quantity = quantity;
    changed();
  },
  clear() {
    lines.clear();
    changed();
  },
  onChange(l: () => void) {
    listeners.add(l);
  },
};
