/**
 * The OpenAPI document generated from the real contracts: every REST route is in it,
 * it is structurally valid OpenAPI 3.1 (checked by hand below: no validator package
 * is installed), and the docs page is self-contained.
 */
import { create, createFileRegistry, setExtension } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, MethodOptionsSchema } from "@bufbuild/protobuf/wkt";
import { http } from "@shopmesh/gen/google/api/annotations_pb.js";
import { HttpRuleSchema } from "@shopmesh/gen/google/api/http_pb.js";
import { CatalogService } from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { IdentityService } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { NotificationService } from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import { OrderService } from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import { PaymentService } from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { describe, expect, it } from "vitest";
import { docsHtml } from "../src/docs.js";
import { buildOpenApi } from "../src/openapi.js";
import { createRestRouter } from "../src/rest.js";

type Obj = Record<string, unknown>;

const services = [
  IdentityService,
  CatalogService,
  OrderService,
  PaymentService,
  NotificationService,
];
const doc = buildOpenApi(services, { title: "shopmesh", version: "v1", serverUrl: "/" }) as Obj;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => {
  if (!isObj(v)) throw new Error(`expected an object, got ${JSON.stringify(v)}`);
  return v;
};
const paths = obj(doc["paths"]);
const components = obj(doc["components"]);
const schemas = obj(components["schemas"]);

const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

function operations(): { path: string; verb: string; op: Obj }[] {
  return Object.entries(paths).flatMap(([path, item]) =>
    Object.entries(obj(item))
      .filter(([k]) => HTTP_METHODS.includes(k))
      .map(([verb, op]) => ({ path, verb, op: obj(op) })),
  );
}

function op(verb: string, path: string): Obj {
  return obj(obj(paths[path])[verb]);
}

/** Every `$ref` anywhere in `value`, with where it was found. */
function refs(value: unknown, at = "#"): { ref: string; at: string }[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => refs(v, `${at}/${i}`));
  if (!isObj(value)) return [];
  return Object.entries(value).flatMap(([k, v]) =>
    k === "$ref" && typeof v === "string" ? [{ ref: v, at }] : refs(v, `${at}/${k}`),
  );
}

/** Every schema object reachable under components.schemas and the operations. */
function schemaObjects(value: unknown, inSchema: boolean, out: Obj[] = []): Obj[] {
  if (Array.isArray(value)) {
    for (const v of value) schemaObjects(v, inSchema, out);
  } else if (isObj(value)) {
    if (inSchema) out.push(value);
    for (const [k, v] of Object.entries(value)) {
      if (k === "schema" || k === "items" || k === "additionalProperties")
        schemaObjects(v, true, out);
      else if (k === "properties" && isObj(v))
        for (const p of Object.values(v)) schemaObjects(p, true, out);
      else if (!inSchema) schemaObjects(v, false, out);
    }
  }
  return out;
}

/** A structural OpenAPI 3.1 check: the rules of the spec the generator could break. */
function structuralErrors(d: Obj): string[] {
  const errors: string[] = [];
  const fail = (m: string) => errors.push(m);
  if (typeof d["openapi"] !== "string" || !/^3\.1\.\d+$/.test(d["openapi"] as string))
    fail("openapi");
  const info = d["info"];
  if (!isObj(info) || typeof info["title"] !== "string" || typeof info["version"] !== "string") {
    fail("info.title/info.version");
  }
  if (!isObj(d["paths"])) fail("paths");
  const tagNames = new Set(((d["tags"] as Obj[] | undefined) ?? []).map((t) => t["name"]));
  const schemes = obj(obj(d["components"])["securitySchemes"]);
  const ids = new Set<string>();
  const shapes = new Map<string, string>();
  for (const [path, item] of Object.entries(obj(d["paths"]))) {
    if (!path.startsWith("/")) fail(`${path}: must start with /`);
    // Same hierarchy with different parameter names is forbidden ("identical" paths).
    const shape = path.replace(/\{[^}]*\}/g, "{}");
    if (shapes.has(shape)) fail(`${path} and ${shapes.get(shape)} are identical templated paths`);
    shapes.set(shape, path);
    const templateNames = [...path.matchAll(/\{([^}]*)\}/g)].map((m) => m[1] ?? "");
    if (new Set(templateNames).size !== templateNames.length) fail(`${path}: repeated parameter`);
    for (const n of templateNames) {
      if (n === "" || /[{}]/.test(n)) fail(`${path}: bad template expression {${n}}`);
    }
    for (const [verb, raw] of Object.entries(obj(item))) {
      if (!HTTP_METHODS.includes(verb)) fail(`${path}: unexpected key ${verb}`);
      const o = obj(raw);
      const where = `${verb} ${path}`;
      const id = o["operationId"];
      if (typeof id !== "string" || ids.has(id)) fail(`${where}: operationId missing or duplicate`);
      ids.add(id as string);
      const responses = o["responses"];
      if (!isObj(responses) || Object.keys(responses).length === 0) fail(`${where}: no responses`);
      for (const [code, r] of Object.entries(obj(responses))) {
        if (!/^([1-5]XX|[1-5]\d\d|default)$/.test(code)) fail(`${where}: response key ${code}`);
        if (typeof obj(r)["description"] !== "string") fail(`${where} ${code}: description`);
      }
      const params = (o["parameters"] as Obj[] | undefined) ?? [];
      const seen = new Set<string>();
      for (const p of params) {
        const key = `${p["in"]}:${p["name"]}`;
        if (seen.has(key)) fail(`${where}: duplicate parameter ${key}`);
        seen.add(key);
        if (!["path", "query", "header", "cookie"].includes(p["in"] as string))
          fail(`${where}: in`);
        if (!isObj(p["schema"]) && !isObj(p["content"])) fail(`${where}: ${key} has no schema`);
        if (p["in"] === "path") {
          if (p["required"] !== true) fail(`${where}: path parameter ${key} must be required`);
          if (!templateNames.includes(p["name"] as string)) fail(`${where}: ${key} not in path`);
        }
      }
      for (const n of templateNames) {
        if (!seen.has(`path:${n}`)) fail(`${where}: {${n}} not declared as a path parameter`);
      }
      if (o["requestBody"] !== undefined) {
        const content = obj(obj(o["requestBody"])["content"]);
        if (Object.keys(content).length === 0) fail(`${where}: requestBody without content`);
      }
      for (const t of (o["tags"] as unknown[] | undefined) ?? []) {
        if (!tagNames.has(t)) fail(`${where}: tag ${String(t)} not declared`);
      }
      for (const req of (o["security"] as Obj[] | undefined) ?? []) {
        for (const name of Object.keys(req))
          if (!isObj(schemes[name])) fail(`${where}: scheme ${name}`);
      }
    }
  }
  for (const name of Object.keys(obj(obj(d["components"])["schemas"]))) {
    if (!/^[a-zA-Z0-9.\-_]+$/.test(name)) fail(`component name ${name}`);
  }
  const jsonTypes = ["null", "boolean", "object", "array", "number", "string", "integer"];
  for (const s of schemaObjects(d, false)) {
    const types = Array.isArray(s["type"]) ? s["type"] : s["type"] === undefined ? [] : [s["type"]];
    for (const t of types) if (!jsonTypes.includes(t as string)) fail(`schema type ${String(t)}`);
    if (s["type"] === "array" && !isObj(s["items"])) fail("array schema without items");
  }
  return errors;
}

describe("buildOpenApi", () => {
  it("documents every REST route, once", () => {
    const listed = operations()
      .map(({ verb, path }) => `${verb.toUpperCase()} ${path}`)
      .sort();
    expect(listed).toEqual(
      [
        "POST /v1/users",
        "POST /v1/auth/login",
        "POST /v1/auth/refresh",
        "GET /v1/users/me",
        "GET /v1/users/{user_id}",
        "GET /v1/users",
        "GET /v1/products",
        "GET /v1/products/{product_id}",
        "POST /v1/products",
        // {product.id}: same shape as GET's {product_id}, so it takes that name (see openapi.ts).
        "PATCH /v1/products/{product_id}",
        "POST /v1/products/{product_id}:adjustStock",
        "POST /v1/orders",
        "GET /v1/orders",
        "GET /v1/orders/{order_id}",
        "POST /v1/orders/{order_id}:cancel",
        "GET /v1/payments",
        "GET /v1/payments/{payment_id}",
        "GET /v1/notifications",
      ].sort(),
    );
    expect(listed).toHaveLength(createRestRouter(services).routes.length);
  });

  it("passes the structural OpenAPI 3.1 checks", () => {
    expect(structuralErrors(doc)).toEqual([]);
    expect(doc["servers"]).toEqual([{ url: "/" }]);
  });

  it("the structural check does catch broken documents", () => {
    const broken = structuredClone(doc);
    const get = obj(obj(obj(broken["paths"])["/v1/orders/{order_id}"])["get"]);
    get["parameters"] = [];
    get["responses"] = {};
    expect(structuralErrors(broken)).toEqual([
      "get /v1/orders/{order_id}: no responses",
      "get /v1/orders/{order_id}: {order_id} not declared as a path parameter",
    ]);
  });

  it("resolves every $ref to a component schema", () => {
    const all = refs(doc);
    expect(all.length).toBeGreaterThan(20);
    for (const { ref, at } of all) {
      expect(ref, at).toMatch(/^#\/components\/schemas\//);
      expect(schemas[ref.slice("#/components/schemas/".length)], `${ref} at ${at}`).toBeDefined();
    }
  });

  it("names operations <Service>_<Method>, uniquely, tagged by service", () => {
    const ids = operations().map(({ op }) => op["operationId"]);
    expect(new Set(ids).size).toBe(18);
    expect(op("get", "/v1/products/{product_id}")["operationId"]).toBe("CatalogService_GetProduct");
    expect(op("post", "/v1/orders/{order_id}:cancel")["operationId"]).toBe(
      "OrderService_CancelOrder",
    );
    expect(op("get", "/v1/users/me")["tags"]).toEqual(["IdentityService"]);
    expect((doc["tags"] as Obj[]).map((t) => t["name"])).toEqual([
      "IdentityService",
      "CatalogService",
      "OrderService",
      "PaymentService",
      "NotificationService",
    ]);
  });

  it("requires a bearer token everywhere except the public methods", () => {
    const publicOps = new Set([
      "IdentityService_Register",
      "IdentityService_Login",
      "IdentityService_Refresh",
      "CatalogService_ListProducts",
      "CatalogService_GetProduct",
    ]);
    for (const { op: o } of operations()) {
      const expected = publicOps.has(o["operationId"] as string) ? [] : [{ bearerAuth: [] }];
      expect(o["security"], o["operationId"] as string).toEqual(expected);
    }
    expect(obj(components["securitySchemes"])["bearerAuth"]).toMatchObject({
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT",
    });
  });

  it("declares path and query parameters by JSON name", () => {
    const patch = op("patch", "/v1/products/{product_id}");
    const params = patch["parameters"] as Obj[];
    expect(params.map((p) => [p["name"], p["in"]])).toEqual([
      ["product_id", "path"],
      ["updateMask", "query"],
    ]);
    expect(params[0]?.["description"]).toMatch(/product\.id/);
    expect(params[1]?.["schema"]).toMatchObject({ type: "string" });
    const list = op("get", "/v1/orders")["parameters"] as Obj[];
    expect(list.map((p) => p["name"])).toEqual(["pageSize", "pageToken", "status", "userId"]);
    expect(list.find((p) => p["name"] === "status")?.["schema"]).toEqual({
      $ref: "#/components/schemas/shop.orders.v1.OrderStatus",
    });
    // body "*" binds everything: no query parameters.
    expect(op("post", "/v1/orders")["parameters"]).toBeUndefined();
  });

  it("describes bodies and responses per the body and response_body rules", () => {
    const create = obj(op("post", "/v1/products")["requestBody"]);
    expect(create["required"]).toBe(true);
    expect(obj(obj(create["content"])["application/json"])["schema"]).toEqual({
      $ref: "#/components/schemas/shop.catalog.v1.Product",
    });
    // body "*" with a path field: the body schema leaves the path field out.
    const adjust = obj(
      obj(obj(op("post", "/v1/products/{product_id}:adjustStock")["requestBody"])["content"])[
        "application/json"
      ],
    );
    expect(Object.keys(obj(obj(adjust["schema"])["properties"]))).toEqual(["delta", "reason"]);
    const ok = (verb: string, path: string) =>
      obj(obj(obj(obj(op(verb, path)["responses"])["200"])["content"])["application/json"])[
        "schema"
      ];
    expect(ok("get", "/v1/products/{product_id}")).toEqual({
      $ref: "#/components/schemas/shop.catalog.v1.Product",
    });
    expect(ok("get", "/v1/products")).toEqual({
      $ref: "#/components/schemas/shop.catalog.v1.ListProductsResponse",
    });
    for (const { op: o } of operations()) {
      const def = obj(obj(o["responses"])["default"]);
      expect(obj(obj(def["content"])["application/json"])["schema"]).toEqual({
        $ref: "#/components/schemas/Error",
      });
    }
    expect(schemas["Error"]).toMatchObject({
      type: "object",
      properties: {
        code: { type: "string" },
        message: { type: "string" },
        details: { type: "array" },
      },
    });
  });

  it("maps message fields per the proto3 JSON mapping", () => {
    const product = obj(obj(schemas["shop.catalog.v1.Product"])["properties"]);
    expect(product["price"]).toEqual({ $ref: "#/components/schemas/shop.common.v1.Money" });
    expect(product["stock"]).toEqual({ type: "integer", format: "int32" });
    expect(product["createTime"]).toEqual({ type: "string", format: "date-time" });
    const money = obj(obj(schemas["shop.common.v1.Money"])["properties"]);
    expect(money["amount"]).toMatchObject({ type: "string", format: "int64" });
    expect(money["currencyCode"]).toEqual({ type: "string" });
    const user = obj(obj(schemas["shop.identity.v1.User"])["properties"]);
    expect(user["roles"]).toEqual({
      type: "array",
      items: { $ref: "#/components/schemas/shop.identity.v1.Role" },
    });
    expect(schemas["shop.identity.v1.Role"]).toMatchObject({
      type: "string",
      enum: ["ROLE_UNSPECIFIED", "ROLE_CUSTOMER", "ROLE_ADMIN"],
    });
    const order = obj(obj(schemas["shop.orders.v1.Order"])["properties"]);
    expect(order["items"]).toEqual({
      type: "array",
      items: { $ref: "#/components/schemas/shop.orders.v1.OrderItem" },
    });
  });

  it("emits only the component schemas something refers to", () => {
    const used = new Set(refs(doc).map((r) => r.ref.slice("#/components/schemas/".length)));
    expect(Object.keys(schemas).sort()).toEqual([...used].sort());
    // UpdateProductRequest is never a body as a whole (its body is "product").
    expect(schemas["shop.catalog.v1.UpdateProductRequest"]).toBeUndefined();
  });

  it("is JSON-serialisable (no bigint, no undefined surprises)", () => {
    const text = JSON.stringify(doc);
    expect(JSON.parse(text)).toEqual(doc);
  });
});

describe("docsHtml", () => {
  it("is a self-contained page that loads the given document", () => {
    const html = docsHtml("/openapi.json");
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('"/openapi.json"');
    expect(html).toContain('<a href="/openapi.json">');
    // No external resources: the machine (and many clusters) have no internet.
    expect(html).not.toMatch(/<(script|link)[^>]+(src|href)=["']?https?:/i);
    expect(html).not.toMatch(/https?:\/\//);
  });

  it("carries a script that parses", () => {
    const inline = [...docsHtml("/openapi.json").matchAll(/<script>([\s\S]*?)<\/script>/g)];
    expect(inline).toHaveLength(1);
    // Compiles without running: a syntax error in the page would otherwise show only in a browser.
    expect(() => new Function(inline[0]?.[1] ?? "throw 1")).not.toThrow();
    expect(() => new Function("{")).toThrow(SyntaxError);
  });

  it("cannot be broken out of by the URL it embeds", () => {
    const html = docsHtml('/x"></script><script>alert(1)</script>');
    expect(html).not.toContain("<script>alert(1)");
    expect(html.match(/<\/script>/g)).toHaveLength(2);
  });
});

describe("comments", () => {
  // The embedded descriptors carry no source info; descriptors that do (e.g. from a
  // `buf build` image) get their proto comments into the document.
  const file = create(FileDescriptorProtoSchema, {
    name: "test/v1/notes.proto",
    package: "test.v1",
    syntax: "proto3",
    messageType: [
      {
        name: "Note",
        field: [{ name: "note_id", jsonName: "noteId", number: 1, type: 9, label: 1 }],
      },
    ],
    service: [
      {
        name: "NoteService",
        method: [
          {
            name: "GetNote",
            inputType: ".test.v1.Note",
            outputType: ".test.v1.Note",
            options: (() => {
              const options = create(MethodOptionsSchema);
              setExtension(
                options,
                http,
                create(HttpRuleSchema, { pattern: { case: "get", value: "/v1/notes/{note_id}" } }),
              );
              return options;
            })(),
          },
        ],
      },
    ],
    sourceCodeInfo: {
      location: [
        { path: [6, 0], leadingComments: " Notes, kept for a while.\n" },
        { path: [6, 0, 2, 0], leadingComments: " Returns one note. Anyone may call it.\n" },
        { path: [4, 0], leadingComments: " A short text.\n" },
        { path: [4, 0, 2, 0], leadingComments: " UUID of the note.\n" },
      ],
    },
  });
  const service = createFileRegistry(file, () => undefined).getService("test.v1.NoteService");
  if (service === undefined) throw new Error("synthetic service missing");
  const notes = buildOpenApi([service], { title: "notes", version: "1", publicMethods: [] }) as Obj;

  it("uses leading comments for summaries, descriptions and tags", () => {
    const get = obj(obj(obj(notes["paths"])["/v1/notes/{note_id}"])["get"]);
    expect(get["summary"]).toBe("Returns one note.");
    expect(get["description"]).toMatch(/^Returns one note\. Anyone may call it\./);
    expect(get["security"]).toEqual([{ bearerAuth: [] }]);
    expect(notes["tags"]).toEqual([
      { name: "NoteService", description: "Notes, kept for a while." },
    ]);
    const note = obj(obj(obj(notes["components"])["schemas"])["test.v1.Note"]);
    expect(note["description"]).toBe("A short text.");
    expect(obj(note["properties"])["noteId"]).toEqual({
      type: "string",
      description: "UUID of the note.",
    });
    expect(notes["servers"]).toBeUndefined();
    expect(structuralErrors(notes)).toEqual([]);
  });
});
