/**
 * What each notification says: `welcomeMessage`, `orderConfirmedMessage`,
 * `orderCancelledMessage`, `paymentFailedMessage`, `paymentRefundedMessage` (subject
 * and plain-text body), and `formatMoney` for amounts in minor units.
 *
 * Pure functions of the event's facts, so the wording is tested without a database.
 * Subjects stay ASCII: they travel as plain email headers and are easy to match.
 */

/** A subject line and a plain-text body. */
export interface MessageContent {
  subject: string;
  body: string;
}

/** An amount as events carry it: integer minor units and an ISO 4217 code. */
export interface MoneyLike {
  currencyCode: string;
  amount: bigint;
}

const SIGNATURE = "\n\n-- \nshopmesh";

/** "Hi Ada," or "Hi," when the user gave no display name. */
function greeting(displayName: string): string {
  const name = displayName.trim();
  return name === "" ? "Hi," : `Hi ${name},`;
}

/** The short reference people read and say: "#1f0c9a3b" (first 8 hex digits of the id). */
export function orderReference(orderId: string): string {
  return `#${orderId.slice(0, 8)}`;
}

/**
 * "$1,234.50", "¥1,200", "BHD 1.250": the currency's own number of minor digits (from
 * Intl), decimal arithmetic on the bigint so no amount is rounded through a float.
 */
export function formatMoney(money: MoneyLike | undefined): string {
  if (money === undefined) return "the amount";
  try {
    const { format, digits } = currencyFormat(money.currencyCode);
    const negative = money.amount < 0n;
    const abs = (negative ? -money.amount : money.amount).toString().padStart(digits + 1, "0");
    const decimal =
      digits === 0 ? abs : `${abs.slice(0, abs.length - digits)}.${abs.slice(abs.length - digits)}`;
    // Intl formats a decimal string exactly (Intl.NumberFormat v3), bigint-sized or not.
    return format.format(`${negative ? "-" : ""}${decimal}` as `${number}`);
  } catch {
    // Not a currency Intl knows: still say something true.
    return `${money.amount} (minor units of ${money.currencyCode || "unknown currency"})`;
  }
}

/** One formatter per currency code (a new Intl.NumberFormat costs ~28 µs; a format ~0.5). */
const formats = new Map<string, { format: Intl.NumberFormat; digits: number }>();

function currencyFormat(currency: string) {
  let f = formats.get(currency);
  if (f === undefined) {
    const format = new Intl.NumberFormat("en-US", { style: "currency", currency }); // throws if unknown
    f = { format, digits: format.resolvedOptions().maximumFractionDigits ?? 2 };
    if (formats.size < 512) formats.set(currency, f);
  }
  return f;
}

/**
 * Reasons arrive as codes ("card_declined", "payment_failed: insufficient_funds");
 * people read sentences. Unknown codes are shown with their underscores as spaces.
 */
const REASONS: Record<string, string> = {
  card_declined: "the card was declined",
  insufficient_funds: "the card has insufficient funds",
  processing_error: "the payment provider had a problem processing the payment",
  payment_failed: "the payment failed",
  cancelled_by_user: "you cancelled it",
  user_cancelled: "you cancelled it",
  cancelled_by_admin: "it was cancelled by our staff",
};

export function describeReason(reason: string): string {
  const trimmed = reason.trim();
  if (trimmed === "") return "no reason was given";
  return trimmed
    .split(/:\s*/)
    .map((part) => REASONS[part.toLowerCase()] ?? part.replaceAll("_", " "))
    .join(": ");
}

export function welcomeMessage(displayName: string): MessageContent {
  return {
    subject: "Welcome to shopmesh",
    body:
      `${greeting(displayName)}\n\n` +
      "Thanks for signing up. You can now browse the catalog and place orders; " +
      "we will email you here when an order is confirmed or something needs your attention." +
      SIGNATURE,
  };
}

export function orderConfirmedMessage(
  displayName: string,
  orderId: string,
  total: MoneyLike | undefined,
): MessageContent {
  return {
    subject: `Your order ${orderReference(orderId)} is confirmed`,
    body:
      `${greeting(displayName)}\n\n` +
      `Thanks for your order. We received your payment of ${formatMoney(total)} ` +
      `and your order ${orderId} is confirmed.` +
      SIGNATURE,
  };
}

export function orderCancelledMessage(
  displayName: string,
  orderId: string,
  reason: string,
  wasConfirmed: boolean,
): MessageContent {
  return {
    subject: `Your order ${orderReference(orderId)} was cancelled`,
    body:
      `${greeting(displayName)}\n\n` +
      `Your order ${orderId} was cancelled: ${describeReason(reason)}.` +
      (wasConfirmed
        ? " Your payment will be refunded; we will email you when the refund goes through."
        : " You have not been charged.") +
      SIGNATURE,
  };
}

export function paymentFailedMessage(
  displayName: string,
  orderId: string,
  reason: string,
  retryable: boolean,
): MessageContent {
  return {
    subject: `Payment for your order ${orderReference(orderId)} failed`,
    body:
      `${greeting(displayName)}\n\n` +
      `We could not take the payment for your order ${orderId}: ${describeReason(reason)}. ` +
      (retryable
        ? "This looks like a temporary problem; placing the order again may well work."
        : "Please place the order again with another payment method.") +
      SIGNATURE,
  };
}

export function paymentRefundedMessage(
  displayName: string,
  orderId: string,
  amount: MoneyLike | undefined,
): MessageContent {
  return {
    subject: `Refund for your order ${orderReference(orderId)}`,
    body:
      `${greeting(displayName)}\n\n` +
      `We refunded ${formatMoney(amount)} for your cancelled order ${orderId}. ` +
      "It can take a few days to show on your statement." +
      SIGNATURE,
  };
}
