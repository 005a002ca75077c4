/**
 * The notifications panel: the latest notifications (ListNotifications), then new ones
 * live through WatchNotifications, a server stream over the Connect protocol. The
 * stream is reopened (after a catch-up list) when it ends or breaks, with backoff;
 * pages subscribe to hear about new notifications (an order page reloads its order).
 */
import { ConnectError } from "@connectrpc/connect";
import type { Notification } from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { describeError, notifications } from "./api.js";
import { h, render } from "./dom.js";
import { SessionExpired, session } from "./session.js";
import { formatTime, link } from "./ui.js";

/** A stream is reopened at least this often (the edge's deadline then starts over). */
const STREAM_MS = 10 * 60_000;

const listeners = new Set<(n: Notification) => void>();

/** Calls `fn` for each notification that arrives until `signal` aborts. */
export function onNotification(signal: AbortSignal, fn: (n: Notification) => void) {
  listeners.add(fn);
  signal.addEventListener("abort", () => listeners.delete(fn));
}

export function mountNotifications(panel: HTMLElement) {
  const list = h("ol", { class: "notes", "aria-live": "polite", "aria-relevant": "additions" });
  const state = h("p", { class: "stream-state" });
  const seen = new Set<string>();
  let running: AbortController | undefined;

  const item = (n: Notification) =>
    h(
      "li",
      { class: "note", dataset: { kind: String(n.kind) } },
      h("strong", {}, n.subject),
      h("span", { class: "when" }, formatTime(n.createTime)),
      n.orderId ? link(`/orders/${n.orderId}`, "View order") : null,
    );

  const add = (n: Notification, live: boolean) => {
    if (seen.has(n.id)) return;
    seen.add(n.id);
    const el = item(n);
    if (live) {
      el.classList.add("new");
      list.prepend(el);
      for (const l of listeners) l(n);
    } else {
      list.append(el);
    }
  };

  const catchUp = async (signal: AbortSignal, first: boolean) => {
    const res = await notifications.listNotifications({ pageSize: 20 }, { signal });
    for (const n of res.notifications) add(n, !first);
  };

  const run = async (signal: AbortSignal) => {
    let backoff = 500;
    let first = true;
    while (!signal.aborted) {
      try {
        await catchUp(signal, first);
        first = false;
        state.textContent = "Live";
        for await (const msg of notifications.watchNotifications(
          {},
          { signal, timeoutMs: STREAM_MS },
        )) {
          backoff = 500;
          if (msg.notification) add(msg.notification, true);
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof SessionExpired) return;
        state.textContent = `Reconnecting… (${describeError(ConnectError.from(err))})`;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  };

  const refresh = () => {
    running?.abort();
    running = undefined;
    seen.clear();
    list.replaceChildren();
    if (!session.signedIn()) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    state.textContent = "Connecting…";
    running = new AbortController();
    void run(running.signal);
  };

  render(panel, h("h2", {}, "Notifications"), state, list);
  session.onChange(refresh);
  refresh();
}
