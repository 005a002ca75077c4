/**
 * My orders, and one order: lines, status, history, the payment's state, and Cancel.
 * An order page follows the saga live: it reloads when a notification about the order
 * arrives (WatchNotifications), and polls while an outcome is still due (payment
 * pending, refund pending) in case the stream is reconnecting.
 */
import { type Order, OrderStatus } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { type Payment, PaymentStatus } from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { orders, payments } from "../api.js";
import { h, render } from "../dom.js";
import { formatMoney } from "../money.js";
import { onNotification } from "../notifications.js";
import {
  badge,
  errorBox,
  formatTime,
  link,
  orderStatusLabel,
  paymentStatusLabel,
  toast,
} from "../ui.js";

const POLL_MS = 1500;

export async function ordersPage(root: HTMLElement, signal: AbortSignal) {
  const error = errorBox();
  const list = h("ul", { class: "orders", "aria-busy": "true" });
  render(root, h("h1", {}, "My orders"), error, list);
  const load = async () => {
    try {
      const res = await orders.listOrders({ pageSize: 50 });
      render(
        list,
        res.orders.length === 0 ? h("li", {}, "No orders yet. ", link("/", "Shop")) : null,
        res.orders.map((o) =>
          h(
            "li",
            { class: "order-row", dataset: { orderId: o.id } },
            link(`/orders/${o.id}`, `Order ${o.id.slice(0, 8)}`),
            h("span", {}, formatTime(o.createTime)),
            h("span", {}, formatMoney(o.total)),
            badge(orderStatusLabel(o.status)),
          ),
        ),
      );
    } catch (err) {
      error.show(err);
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  };
  onNotification(signal, () => void load());
  await load();
}

export async function orderPage(root: HTMLElement, id: string, signal: AbortSignal) {
  const error = errorBox();
  const view = h("div", { class: "order", "aria-live": "polite" });
  render(root, h("p", {}, link("/orders", "← My orders")), h("h1", {}, "Order"), error, view);
  let timer: ReturnType<typeof setTimeout> | undefined;
  signal.addEventListener("abort", () => clearTimeout(timer));

  const load = async () => {
    clearTimeout(timer);
    try {
      const { order } = await orders.getOrder({ orderId: id });
      if (order === undefined) throw new Error("GetOrder answered without an order");
      const { payments: found } = await payments.listPayments({ orderId: id, pageSize: 1 });
      if (signal.aborted) return;
      const payment = found[0];
      error.clear();
      draw(order, payment);
      const due =
        order.status === OrderStatus.PENDING_PAYMENT ||
        (order.status === OrderStatus.CANCELLED && payment?.status === PaymentStatus.CAPTURED) ||
        (order.status === OrderStatus.CONFIRMED && payment === undefined);
      if (due) timer = setTimeout(() => void load(), POLL_MS);
    } catch (err) {
      if (!signal.aborted) error.show(err);
    }
  };

  const cancel = async (button: HTMLButtonElement) => {
    button.disabled = true;
    try {
      await orders.cancelOrder({ orderId: id, reason: "cancelled by the customer" });
      toast("Order cancelled; a captured payment is refunded.");
      await load();
    } catch (err) {
      error.show(err);
      button.disabled = false;
    }
  };

  const draw = (order: Order, payment: Payment | undefined) => {
    const cancellable =
      order.status === OrderStatus.PENDING_PAYMENT || order.status === OrderStatus.CONFIRMED;
    render(
      view,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Order"),
        h("dd", { class: "mono" }, order.id),
        h("dt", {}, "Status"),
        h("dd", { class: "order-status" }, badge(orderStatusLabel(order.status))),
        order.cancelReason ? h("dt", {}, "Reason") : null,
        order.cancelReason ? h("dd", { class: "cancel-reason" }, order.cancelReason) : null,
        h("dt", {}, "Payment"),
        h(
          "dd",
          { class: "payment-status" },
          payment
            ? [
                badge(paymentStatusLabel(payment.status)),
                payment.failureReason ? ` ${payment.failureReason}` : "",
              ]
            : "not yet charged",
        ),
        h("dt", {}, "Total"),
        h("dd", {}, formatMoney(order.total)),
        h("dt", {}, "Placed"),
        h("dd", {}, formatTime(order.createTime)),
      ),
      h("h2", {}, "Items"),
      h(
        "ul",
        { class: "items" },
        order.items.map((i) =>
          h("li", {}, `${i.quantity} × ${i.name} (${i.sku}) — ${formatMoney(i.lineTotal)}`),
        ),
      ),
      h("h2", {}, "History"),
      h(
        "ol",
        { class: "history" },
        order.history.map((c) =>
          h(
            "li",
            {},
            badge(orderStatusLabel(c.status)),
            ` ${formatTime(c.changeTime)}`,
            c.reason ? ` — ${c.reason}` : "",
          ),
        ),
      ),
      cancellable
        ? h(
            "button",
            {
              type: "button",
              class: "danger",
              onclick: (e: Event) => void cancel(e.currentTarget as HTMLButtonElement),
            },
            "Cancel order",
          )
        : null,
    );
  };

  onNotification(signal, (n) => {
    if (n.orderId === id) void load();
  });
  await load();
}
