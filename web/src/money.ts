/** Money (currency code + minor units, as in shop.common.v1.Money) for display and input. */
import type { Money } from "@shopmesh/gen/shop/common/v1/money_pb.js";

export function formatMoney(m: Pick<Money, "currencyCode" | "amount"> | undefined): string {
  if (m === undefined) return "";
  const fmt = new Intl.NumberFormat("en-US", { style: "currency", currency: m.currencyCode });
  const digits = fmt.resolvedOptions().maximumFractionDigits ?? 2;
  return fmt.format(Number(m.amount) / 10 ** digits);
}

/** "12.50" in a currency with 2 minor digits -> 1250n; undefined when not a price. */
export function parseAmount(text: string, digits = 2): bigint | undefined {
  const m = /^\s*(\d{1,9})(?:\.(\d{0,2}))?\s*$/.exec(text);
  if (m === null) return undefined;
  const frac = (m[2] ?? "").padEnd(digits, "0");
  return BigInt(m[1] as string) * 10n ** BigInt(digits) + BigInt(frac || "0");
}
