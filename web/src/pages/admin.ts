/** Admin: add a product, adjust stock (the edge and catalog both require the admin role). */
import { catalog, catalogGrpcWeb } from "../api.js";
import { field, h, render } from "../dom.js";
import { formatMoney, parseAmount } from "../money.js";
import { session } from "../session.js";
import { errorBox, toast } from "../ui.js";

export async function adminPage(root: HTMLElement) {
  if (!session.isAdmin()) {
    render(
      root,
      h("h1", {}, "Admin"),
      h("p", { role: "alert" }, "Sign in as an admin to manage the catalog."),
    );
    return;
  }
  const sku = h("input", { name: "sku", required: true, autocomplete: "off" });
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const description = h("input", { name: "description", autocomplete: "off" });
  const price = h("input", {
    name: "price",
    required: true,
    inputmode: "decimal",
    placeholder: "12.50",
  });
  const currency = h("input", { name: "currency", value: "USD", required: true, maxlength: 3 });
  const stock = h("input", { name: "stock", type: "number", min: 0, value: 10, required: true });
  const createError = errorBox();
  const tableError = errorBox();
  const tbody = h("tbody");

  const loadTable = async () => {
    try {
      const res = await catalogGrpcWeb.listProducts({ pageSize: 100, includeInactive: true });
      render(
        tbody,
        res.products.map((p) => {
          const delta = h("input", {
            type: "number",
            value: 1,
            "aria-label": `Stock change for ${p.sku}`,
            class: "narrow",
          });
          return h(
            "tr",
            { dataset: { sku: p.sku } },
            h("td", {}, p.name),
            h("td", { class: "mono" }, p.sku),
            h("td", {}, formatMoney(p.price)),
            h("td", { class: "stock-cell" }, String(p.stock)),
            h(
              "td",
              {},
              h(
                "form",
                {
                  class: "inline",
                  onsubmit: async (e: Event) => {
                    e.preventDefault();
                    tableError.clear();
                    try {
                      const res = await catalog.adjustStock({
                        productId: p.id,
                        delta: Number(delta.value),
                        reason: "adjusted in the storefront",
                      });
                      toast(`Stock of ${p.sku} is now ${res.product?.stock ?? "?"}.`);
                      await loadTable();
                    } catch (err) {
                      tableError.show(err);
                    }
                  },
                },
                delta,
                h("button", { type: "submit", "aria-label": `Adjust stock of ${p.sku}` }, "Adjust"),
              ),
            ),
          );
        }),
      );
    } catch (err) {
      tableError.show(err);
    }
  };

  const form = h(
    "form",
    {
      class: "stack",
      "aria-label": "Add a product",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        createError.clear();
        const amount = parseAmount(price.value);
        if (amount === undefined) {
          createError.textContent = "Please check your input: price must look like 12.50.";
          createError.hidden = false;
          return;
        }
        try {
          const res = await catalog.createProduct({
            product: {
              sku: sku.value.trim(),
              name: name.value.trim(),
              description: description.value.trim(),
              price: { currencyCode: currency.value.trim().toUpperCase(), amount },
              stock: Number(stock.value),
              active: true,
            },
          });
          toast(`Created ${res.product?.name ?? "the product"}.`);
          form.reset();
          await loadTable();
        } catch (err) {
          createError.show(err);
        }
      },
    },
    field("SKU", sku),
    field("Name", name),
    field("Description", description),
    field("Price", price),
    field("Currency", currency),
    field("Stock", stock),
    createError,
    h("button", { type: "submit", class: "primary" }, "Add product"),
  );

  render(
    root,
    h("h1", {}, "Admin"),
    h("h2", {}, "Add a product"),
    form,
    h("h2", {}, "Stock"),
    tableError,
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "stock" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Name", "SKU", "Price", "Stock", "Change"].map((t) => h("th", { scope: "col" }, t)),
          ),
        ),
        tbody,
      ),
    ),
  );
  await loadTable();
}
