/**
 * The cart and checkout: quantities, the total, a payment test token (the payments
 * simulator's Stripe-style tokens), and PlaceOrder with an idempotency key that stays
 * the same while the cart does, so a retried click never orders twice.
 */
import { orders } from "../api.js";
import { cart } from "../cart.js";
import { field, h, render } from "../dom.js";
import { formatMoney } from "../money.js";
import { session } from "../session.js";
import { errorBox, link, navigate, toast, uuid } from "../ui.js";

/** The simulator's tokens (services/payments/src/provider.ts). */
export const PAYMENT_TOKENS = [
  { token: "tok_visa", label: "Visa — succeeds" },
  { token: "tok_chargeDeclined", label: "Card declined" },
  { token: "tok_insufficientFunds", label: "Insufficient funds" },
  { token: "tok_processingError", label: "Processing error (retried, then fails)" },
];

let idempotencyKey = uuid();
cart.onChange(() => {
  idempotencyKey = uuid();
});

export function cartPage(root: HTMLElement) {
  const lines = cart.lines();
  if (lines.length === 0) {
    render(root, h("h1", {}, "Cart"), h("p", {}, "Your cart is empty. ", link("/", "Shop")));
    return;
  }
  const currency = lines[0]?.product.price?.currencyCode ?? "USD";
  const total = lines.reduce(
    (sum, l) => sum + (l.product.price?.amount ?? 0n) * BigInt(l.quantity),
    0n,
  );
  const tokenSelect = h(
    "select",
    { name: "paymentToken" },
    PAYMENT_TOKENS.map((t) => h("option", { value: t.token }, `${t.label} (${t.token})`)),
  );
  const error = errorBox();
  const place = h("button", { type: "submit", class: "primary" }, "Place order");
  const table = h(
    "table",
    { class: "cart" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Product"),
        h("th", { scope: "col" }, "Quantity"),
        h("th", { scope: "col" }, "Price"),
        h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Remove")),
      ),
    ),
    h(
      "tbody",
      {},
      lines.map((l) =>
        h(
          "tr",
          {},
          h("td", {}, link(`/products/${l.product.id}`, l.product.name)),
          h(
            "td",
            {},
            h("input", {
              type: "number",
              min: 0,
              max: 99,
              value: l.quantity,
              "aria-label": `Quantity of ${l.product.name}`,
              onchange: (e: Event) => {
                cart.set(l.product.id, Number((e.target as HTMLInputElement).value) || 0);
                cartPage(root);
              },
            }),
          ),
          h("td", {}, formatMoney(l.product.price)),
          h(
            "td",
            {},
            h(
              "button",
              {
                type: "button",
                class: "link",
                "aria-label": `Remove ${l.product.name}`,
                onclick: () => {
                  cart.set(l.product.id, 0);
                  cartPage(root);
                },
              },
              "Remove",
            ),
          ),
        ),
      ),
    ),
  );
  render(
    root,
    h("h1", {}, "Cart"),
    table,
    h("p", { class: "total" }, "Total: ", formatMoney({ currencyCode: currency, amount: total })),
    h(
      "form",
      {
        class: "stack checkout",
        "aria-label": "Checkout",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          error.clear();
          if (!session.signedIn()) {
            navigate("/signin");
            return;
          }
          place.disabled = true;
          try {
            const { order } = await orders.placeOrder({
              items: cart.lines().map((l) => ({ productId: l.product.id, quantity: l.quantity })),
              paymentToken: tokenSelect.value,
              idempotencyKey,
            });
            if (order === undefined) throw new Error("PlaceOrder answered without an order");
            cart.clear();
            toast("Order placed; waiting for the payment.");
            navigate(`/orders/${order.id}`);
          } catch (err) {
            error.show(err);
          } finally {
            place.disabled = false;
          }
        },
      },
      h("h2", {}, "Checkout"),
      field("Payment method (test token)", tokenSelect),
      error,
      session.signedIn()
        ? place
        : h(
            "p",
            {},
            link("/signin", "Sign in"),
            " or ",
            link("/signup", "create an account"),
            " to order.",
          ),
    ),
  );
}
