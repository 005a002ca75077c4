/**
 * The storefront's entry: the router (history API; the edge answers page routes with
 * index.html), the navigation bar, the notifications panel, and what happens when
 * the session expires.
 */
import "./style.css";
import { cart } from "./cart.js";
import { h, render } from "./dom.js";
import { mountNotifications } from "./notifications.js";
import { adminPage } from "./pages/admin.js";
import { authPage } from "./pages/auth.js";
import { cartPage } from "./pages/checkout.js";
import { orderPage, ordersPage } from "./pages/orders.js";
import { productPage, productsPage } from "./pages/products.js";
import { session } from "./session.js";
import { focusHeading, link, navigate, onNavigate, toast } from "./ui.js";

const main = document.getElementById("main") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;
const panel = document.getElementById("notifications") as HTMLElement;

/** Aborted when the page changes: pages stop polling and unsubscribe. */
let pageLife = new AbortController();
let expiredNotice: string | undefined;

function needsSignIn(): boolean {
  if (session.signedIn()) return false;
  authPage(main, "signin", expiredNotice ?? "Please sign in first.");
  expiredNotice = undefined;
  return true;
}

async function route(path: string) {
  pageLife.abort();
  pageLife = new AbortController();
  const signal = pageLife.signal;
  const url = new URL(path, location.origin);
  const p = url.pathname;
  const product = /^\/products\/([\w-]+)$/.exec(p);
  const order = /^\/orders\/([\w-]+)$/.exec(p);
  drawNav();
  if (p === "/") await productsPage(main, url);
  else if (product) await productPage(main, product[1] as string);
  else if (p === "/signin") authPage(main, "signin", expiredNotice);
  else if (p === "/signup") authPage(main, "signup");
  else if (p === "/cart") cartPage(main);
  else if (p === "/orders") {
    if (!needsSignIn()) await ordersPage(main, signal);
  } else if (order) {
    if (!needsSignIn()) await orderPage(main, order[1] as string, signal);
  } else if (p === "/admin") {
    if (!needsSignIn()) await adminPage(main);
  } else {
    render(main, h("h1", {}, "Page not found"), h("p", {}, link("/", "Back to the products")));
  }
  // A page that is no longer the current one leaves focus alone; so does a page whose
  // data arrived after the user had already moved into it (typing in the search box).
  if (signal.aborted) return;
  expiredNotice = undefined;
  const active = document.activeElement;
  if (!(active instanceof HTMLElement && active !== main && main.contains(active)))
    focusHeading(main);
}

function drawNav() {
  const here = location.pathname;
  const item = (href: string, label: string) => {
    const a = link(href, label);
    if (here === href) a.setAttribute("aria-current", "page");
    return h("li", {}, a);
  };
  const count = cart.count();
  render(
    nav,
    h(
      "ul",
      {},
      item("/", "Products"),
      item("/cart", count > 0 ? `Cart (${count})` : "Cart"),
      session.signedIn() ? item("/orders", "My orders") : null,
      session.isAdmin() ? item("/admin", "Admin") : null,
      session.signedIn()
        ? h(
            "li",
            {},
            h(
              "button",
              {
                type: "button",
                class: "link",
                title: session.user()?.email,
                onclick: () => {
                  session.signOut();
                  toast("Signed out.");
                  navigate("/");
                },
              },
              "Sign out",
            ),
          )
        : [item("/signin", "Sign in"), item("/signup", "Sign up")],
    ),
  );
}

const go = (path: string) => {
  route(path).catch((err: unknown) => toast(String(err), "error"));
};

// Links marked data-link navigate inside the app (plain clicks only).
document.addEventListener("click", (e) => {
  const a = (e.target as Element | null)?.closest?.("a[data-link]");
  if (!(a instanceof HTMLAnchorElement) || e.defaultPrevented) return;
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  if (a.pathname + a.search !== location.pathname + location.search)
    navigate(a.pathname + a.search);
});
window.addEventListener("popstate", () => go(location.pathname + location.search));
onNavigate(go);
cart.onChange(drawNav);
session.onChange((why) => {
  if (why === "expired") {
    expiredNotice = "Your session expired. Please sign in again.";
    toast(expiredNotice, "error");
    navigate("/signin");
  } else drawNav();
});
mountNotifications(panel);
go(location.pathname + location.search);
