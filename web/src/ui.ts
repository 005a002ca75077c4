/**
 * Shared bits of the pages: client-side navigation, the toast line, inline error
 * boxes, a uuid that also works outside secure contexts, and status labels.
 */
import { OrderStatus } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { PaymentStatus } from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { describeError } from "./api.js";
import { h } from "./dom.js";

let navigateHandler: (path: string) => void = () => {};

export function onNavigate(handler: (path: string) => void) {
  navigateHandler = handler;
}

/** Goes to a page of the app without reloading (history API). */
export function navigate(path: string) {
  history.pushState(null, "", path);
  navigateHandler(path);
}

/** A link handled by the router. */
export function link(href: string, ...children: (Node | string)[]) {
  return h("a", { href, "data-link": true }, ...children);
}

let toastTimer: ReturnType<typeof setTimeout> | undefined;

/** A short message in the polite live region at the bottom of the page. */
export function toast(text: string, kind: "info" | "error" = "info") {
  const el = document.getElementById("toast");
  if (el === null) return;
  el.textContent = text;
  el.className = `show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.className = "";
  }, 5000);
}

/** An error box (role=alert) to put next to what failed. */
export type ErrorBox = HTMLElement & { show(err: unknown): void; clear(): void };

export function errorBox(): ErrorBox {
  const el = h("p", { class: "error", role: "alert", hidden: true });
  return Object.assign(el, {
    show(err: unknown) {
      el.textContent = describeError(err);
      el.hidden = false;
    },
    clear() {
      el.textContent = "";
      el.hidden = true;
    },
  });
}

/** An idempotency key: crypto.randomUUID needs a secure context, this does not. */
export function uuid(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function orderStatusLabel(s: OrderStatus): string {
  return (OrderStatus[s] ?? "UNKNOWN").replace(/_/g, " ");
}

export function paymentStatusLabel(s: PaymentStatus): string {
  return (PaymentStatus[s] ?? "UNKNOWN").replace(/_/g, " ");
}

export function badge(text: string) {
  return h("span", { class: `badge ${text.toLowerCase().replace(/\s+/g, "-")}` }, text);
}

export function formatTime(t: { seconds: bigint; nanos: number } | undefined): string {
  if (t === undefined) return "";
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toLocaleString();
}

/** Focuses the page's first heading after a navigation, for keyboard and screen readers. */
export function focusHeading(root: HTMLElement) {
  const heading = root.querySelector("h1");
  if (heading instanceof HTMLElement) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}
