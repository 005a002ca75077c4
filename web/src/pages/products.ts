/**
 * The product list: search and pagination (page tokens), fetched over gRPC-Web; and a
 * product's page, fetched over Connect.
 */
import type { Product } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { catalog, catalogGrpcWeb } from "../api.js";
import { cart } from "../cart.js";
import { field, h, render } from "../dom.js";
import { formatMoney } from "../money.js";
import { errorBox, link, navigate, toast } from "../ui.js";

const PAGE_SIZE = 8;

/** `/?q=shoes`: the page tokens seen so far for this query, so Previous works. */
export async function productsPage(root: HTMLElement, url: URL) {
  const query = url.searchParams.get("q") ?? "";
  const tokens: string[] = [""];
  let page = 0;
  const search = h("input", {
    type: "search",
    name: "q",
    value: query,
    placeholder: "name or sku",
    autocomplete: "off",
  });
  const form = h(
    "form",
    {
      class: "search",
      role: "search",
      onsubmit: (e: Event) => {
        e.preventDefault();
        const q = search.value.trim();
        navigate(q ? `/?q=${encodeURIComponent(q)}` : "/");
      },
    },
    field("Search products", search),
    h("button", { type: "submit" }, "Search"),
  );
  const list = h("ul", { class: "products", "aria-live": "polite", "aria-busy": "true" });
  const prev = h("button", { type: "button", disabled: true }, "← Previous");
  const next = h("button", { type: "button", disabled: true }, "Next →");
  const pageLabel = h("span", { class: "page-label" });
  const error = errorBox();
  render(
    root,
    h("h1", {}, query ? `Products matching “${query}”` : "Products"),
    form,
    error,
    list,
    h("nav", { class: "pager", "aria-label": "Pages" }, prev, pageLabel, next),
  );

  const load = async () => {
    list.setAttribute("aria-busy", "true");
    error.clear();
    try {
      const res = await catalogGrpcWeb.listProducts({
        pageSize: PAGE_SIZE,
        pageToken: tokens[page] ?? "",
        query,
      });
      if (res.nextPageToken) tokens[page + 1] = res.nextPageToken;
      else tokens.length = page + 1;
      render(
        list,
        res.products.length === 0 ? h("li", { class: "empty" }, "No products found.") : null,
        res.products.map(productCard),
      );
      prev.disabled = page === 0;
      next.disabled = tokens[page + 1] === undefined;
      pageLabel.textContent = `Page ${page + 1}`;
    } catch (err) {
      error.show(err);
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  };
  prev.addEventListener("click", () => {
    page -= 1;
    void load();
  });
  next.addEventListener("click", () => {
    page += 1;
    void load();
  });
  await load();
}

function stockLabel(p: Product) {
  return p.stock > 0 ? `${p.stock} in stock` : "Out of stock";
}

function productCard(p: Product) {
  return h(
    "li",
    { class: "card", dataset: { sku: p.sku } },
    h("h2", {}, link(`/products/${p.id}`, p.name)),
    h("p", { class: "sku" }, p.sku),
    h("p", { class: "price" }, formatMoney(p.price)),
    h("p", { class: p.stock > 0 ? "stock" : "stock out" }, stockLabel(p)),
    h(
      "button",
      {
        type: "button",
        disabled: p.stock <= 0,
        "aria-label": `Add ${p.name} to cart`,
        onclick: () => {
          cart.add(p);
          toast(`Added ${p.name} to the cart.`);
        },
      },
      "Add to cart",
    ),
  );
}

/** `/products/:id` */
export async function productPage(root: HTMLElement, id: string) {
  const error = errorBox();
  render(root, h("h1", {}, "Product"), error);
  try {
    const { product } = await catalog.getProduct({ productId: id });
    if (product === undefined) throw new Error("no product in the answer");
    const qty = h("input", { type: "number", min: 1, max: 99, value: 1, name: "quantity" });
    render(
      root,
      h("p", {}, link("/", "← All products")),
      h("h1", {}, product.name),
      h("p", { class: "sku" }, `SKU ${product.sku}`),
      h("p", { class: "price big" }, formatMoney(product.price)),
      h("p", { class: product.stock > 0 ? "stock" : "stock out" }, stockLabel(product)),
      product.description ? h("p", { class: "description" }, product.description) : null,
      h(
        "form",
        {
          class: "inline",
          onsubmit: (e: Event) => {
            e.preventDefault();
            const n = Math.max(1, Math.min(99, Number(qty.value) || 1));
            cart.add(product, n);
            toast(`Added ${n} × ${product.name} to the cart.`);
          },
        },
        field("Quantity", qty),
        h("button", { type: "submit", disabled: product.stock <= 0 }, "Add to cart"),
      ),
      error,
    );
  } catch (err) {
    error.show(err);
  }
}
