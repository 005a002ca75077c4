/**
 * The demo catalog: `DEMO_PRODUCTS` and `seedDemoCatalog(db)`, which inserts them
 * idempotently (ON CONFLICT (sku) DO NOTHING), so every start may run it and a
 * product an admin has since changed is left as it is.
 */
import type { CatalogDb } from "./db/database.js";
import { products } from "./db/schema.js";

type DemoProduct = Pick<
  typeof products.$inferInsert,
  "sku" | "name" | "description" | "priceAmount" | "stock" | "active"
>;

/** USD prices in cents. */
export const DEMO_PRODUCTS: readonly DemoProduct[] = [
  {
    sku: "MUG-STONEWARE-12",
    name: "Stoneware Coffee Mug, 12 oz",
    description: "Hand-glazed stoneware mug in speckled oat. Dishwasher and microwave safe.",
    priceAmount: 1400n,
    stock: 240,
    active: true,
  },
  {
    sku: "TEE-ORGANIC-BLK-M",
    name: "Organic Cotton T-Shirt, Black, M",
    description: "Heavyweight 220 gsm organic cotton tee with a relaxed fit. Pre-shrunk.",
    priceAmount: 2400n,
    stock: 180,
    active: true,
  },
  {
    sku: "BOTTLE-STEEL-750",
    name: "Insulated Steel Water Bottle, 750 ml",
    description: "Double-walled stainless steel; keeps drinks cold 24 h or hot 12 h.",
    priceAmount: 3200n,
    stock: 150,
    active: true,
  },
  {
    sku: "NOTEBOOK-A5-DOT",
    name: "A5 Dot-Grid Notebook",
    description: "192 numbered pages of 100 gsm fountain-pen-friendly paper, lay-flat binding.",
    priceAmount: 1250n,
    stock: 400,
    active: true,
  },
  {
    sku: "PEN-GEL-05-10PK",
    name: "Gel Pens 0.5 mm, 10-pack",
    description: "Quick-drying gel ink in ten colours. Retractable, with rubber grip.",
    priceAmount: 999n,
    stock: 500,
    active: true,
  },
  {
    sku: "HEADPHONES-ANC-200",
    name: "Wireless Noise-Cancelling Headphones",
    description: "Over-ear Bluetooth 5.3 headphones with active noise cancelling and 30 h battery.",
    priceAmount: 19900n,
    stock: 35,
    active: true,
  },
  {
    sku: "KEYBOARD-MECH-TKL",
    name: "Mechanical Keyboard, Tenkeyless",
    description: "Hot-swappable tactile switches, PBT keycaps, USB-C, white backlight.",
    priceAmount: 12900n,
    stock: 60,
    active: true,
  },
  {
    sku: "MOUSE-ERGO-WL",
    name: "Ergonomic Wireless Mouse",
    description: "Vertical design that keeps the wrist neutral. Silent clicks, 70-day battery.",
    priceAmount: 4999n,
    stock: 90,
    active: true,
  },
  {
    sku: "LAMP-LED-DESK",
    name: "LED Desk Lamp with Dimmer",
    description: "Flicker-free LED with five colour temperatures and a USB charging port.",
    priceAmount: 3900n,
    stock: 75,
    active: true,
  },
  {
    sku: "BACKPACK-ROLLTOP-20",
    name: "Roll-Top Backpack, 20 L",
    description: "Waterproof recycled tarpaulin with a padded 16-inch laptop sleeve.",
    priceAmount: 8900n,
    stock: 45,
    active: true,
  },
  {
    sku: "SOCKS-MERINO-3PK",
    name: "Merino Wool Socks, 3-pack",
    description: "Cushioned hiking socks, 70% merino wool. Naturally odour-resistant.",
    priceAmount: 2700n,
    stock: 220,
    active: true,
  },
  {
    sku: "CHARGER-USBC-65W",
    name: "65 W USB-C GaN Charger",
    description: "Compact two-port charger for laptops, tablets and phones. Foldable plug.",
    priceAmount: 4500n,
    stock: 120,
    active: true,
  },
  {
    sku: "TEA-SENCHA-100G",
    name: "Japanese Sencha Green Tea, 100 g",
    description: "First-flush loose-leaf sencha from Shizuoka, in a resealable tin.",
    priceAmount: 1600n,
    stock: 300,
    active: true,
  },
  {
    sku: "POSTER-LTD-ED",
    name: "Limited Edition Art Print",
    description: "Signed and numbered giclée print on cotton rag paper, 30 x 40 cm.",
    priceAmount: 7500n,
    stock: 3,
    active: true,
  },
  {
    // Deep stock so load tests can place orders for a long time without running out.
    sku: "BENCH-STICKER-PACK",
    name: "Sticker Pack",
    description: "Ten vinyl die-cut stickers. Stocked deep: the product load tests order.",
    priceAmount: 300n,
    stock: 100_000,
    active: true,
  },
  {
    // Inactive, to show include_inactive and the "not for sale" path.
    sku: "MUG-LEGACY-8",
    name: "Classic Diner Mug, 8 oz (discontinued)",
    description: "Our first mug. No longer sold; kept so links from old orders work.",
    priceAmount: 1100n,
    stock: 12,
    active: false,
  },
];

/** Inserts the demo products that are not there yet; resolves to how many it inserted. */
export async function seedDemoCatalog(db: CatalogDb): Promise<number> {
  const inserted = await db
    .insert(products)
    .values(DEMO_PRODUCTS.map((p) => ({ ...p, currencyCode: "USD" })))
    .onConflictDoNothing({ target: products.sku })
    .returning({ id: products.id });
  return inserted.length;
}
