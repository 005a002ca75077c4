/**
 * REST transcoding against the real contracts: every annotated path reaches its
 * method, query/path/body decode as the google.api.http rules say, and responses
 * honour response_body.
 */
import {
  create,
  createFileRegistry,
  type DescMessage,
  type DescService,
  type MessageInitShape,
  type MessageShape,
  setExtension,
  toJson,
} from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
  MethodOptionsSchema,
  timestampFromDate,
} from "@bufbuild/protobuf/wkt";
import { http } from "@shopmesh/gen/google/api/annotations_pb.js";
import { HttpRuleSchema } from "@shopmesh/gen/google/api/http_pb.js";
import {
  AdjustStockRequestSchema,
  CatalogService,
  CreateProductRequestSchema,
  GetProductResponseSchema,
  ListProductsRequestSchema,
  ListProductsResponseSchema,
  UpdateProductRequestSchema,
} from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import {
  IdentityService,
  LoginResponseSchema,
} from "@shopmesh/gen/shop/identity/v1/identity_pb.js";
import { NotificationService } from "@shopmesh/gen/shop/notifications/v1/notifications_pb.js";
import {
  CancelOrderRequestSchema,
  ListOrdersRequestSchema,
  OrderService,
  OrderStatus,
  PlaceOrderRequestSchema,
} from "@shopmesh/gen/shop/orders/v1/orders_pb.js";
import {
  GetPaymentRequestSchema,
  ListPaymentsRequestSchema,
  PaymentService,
} from "@shopmesh/gen/shop/payments/v1/payments_pb.js";
import { InvalidArgumentError } from "@shopmesh/runtime";
import { describe, expect, it } from "vitest";
import {
  createRestRouter,
  decodeRestRequest,
  encodeRestResponse,
  parsePathTemplate,
  type RestMatch,
} from "../src/rest.js";

const services = [
  IdentityService,
  CatalogService,
  OrderService,
  PaymentService,
  NotificationService,
];
const router = createRestRouter(services);

function mustMatch(verb: string, path: string): RestMatch {
  const m = router.match(verb, path);
  if (m === undefined) throw new Error(`no route for ${verb} ${path}`);
  return m;
}

/** Decodes and narrows to the expected request type (fails the test on a wrong type). */
function decode<Desc extends DescMessage>(
  schema: Desc,
  verb: string,
  path: string,
  query = "",
  body?: unknown,
): MessageShape<Desc> {
  const msg = decodeRestRequest(mustMatch(verb, path), new URLSearchParams(query), body);
  expect(msg.$typeName).toBe(schema.typeName);
  return msg as MessageShape<Desc>;
}

function invalidArgument(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidArgumentError);
    return e as InvalidArgumentError;
  }
  throw new Error("expected an InvalidArgumentError");
}

describe("routing", () => {
  const table: [verb: string, path: string, method: string, params: Record<string, string>][] = [
    ["POST", "/v1/users", "shop.identity.v1.IdentityService.Register", {}],
    ["POST", "/v1/auth/login", "shop.identity.v1.IdentityService.Login", {}],
    ["POST", "/v1/auth/refresh", "shop.identity.v1.IdentityService.Refresh", {}],
    ["GET", "/v1/users/me", "shop.identity.v1.IdentityService.GetMe", {}],
    ["GET", "/v1/users/u1", "shop.identity.v1.IdentityService.GetUser", { user_id: "u1" }],
    ["GET", "/v1/users", "shop.identity.v1.IdentityService.ListUsers", {}],
    ["GET", "/v1/products", "shop.catalog.v1.CatalogService.ListProducts", {}],
    ["GET", "/v1/products/p1", "shop.catalog.v1.CatalogService.GetProduct", { product_id: "p1" }],
    ["POST", "/v1/products", "shop.catalog.v1.CatalogService.CreateProduct", {}],
    [
      "PATCH",
      "/v1/products/p1",
      "shop.catalog.v1.CatalogService.UpdateProduct",
      { "product.id": "p1" },
    ],
    [
      "POST",
      "/v1/products/p1:adjustStock",
      "shop.catalog.v1.CatalogService.AdjustStock",
      { product_id: "p1" },
    ],
    ["POST", "/v1/orders", "shop.orders.v1.OrderService.PlaceOrder", {}],
    ["GET", "/v1/orders", "shop.orders.v1.OrderService.ListOrders", {}],
    ["GET", "/v1/orders/o1", "shop.orders.v1.OrderService.GetOrder", { order_id: "o1" }],
    ["POST", "/v1/orders/o1:cancel", "shop.orders.v1.OrderService.CancelOrder", { order_id: "o1" }],
    ["GET", "/v1/payments", "shop.payments.v1.PaymentService.ListPayments", {}],
    [
      "GET",
      "/v1/payments/pay1",
      "shop.payments.v1.PaymentService.GetPayment",
      { payment_id: "pay1" },
    ],
    ["GET", "/v1/notifications", "shop.notifications.v1.NotificationService.ListNotifications", {}],
  ];

  it.each(table)("%s %s → %s", (verb, path, method, params) => {
    const m = mustMatch(verb, path);
    expect(`${m.route.method.parent.typeName}.${m.route.method.name}`).toBe(method);
    expect(m.params).toEqual(params);
  });

  it("has exactly the 18 annotated routes and no route for streaming or internal methods", () => {
    expect(router.routes).toHaveLength(18);
    expect(router.routes.map((r) => r.method.name)).not.toContain("WatchNotifications");
    expect(new Set(router.routes.map((r) => r.method)).size).toBe(18);
  });

  it("prefers literal segments over variables", () => {
    expect(mustMatch("GET", "/v1/users/me").route.method.name).toBe("GetMe");
    expect(mustMatch("GET", "/v1/users/mee").route.method.name).toBe("GetUser");
  });

  it("keeps custom verbs apart from plain variables", () => {
    expect(router.match("GET", "/v1/products/abc:adjustStock")).toBeUndefined();
    expect(router.allowedVerbs("/v1/products/abc:adjustStock")).toEqual(["POST"]);
    expect(router.match("POST", "/v1/products/abc")).toBeUndefined();
    expect(router.match("POST", "/v1/products/abc:frobnicate")).toBeUndefined();
    expect(router.allowedVerbs("/v1/products/abc:frobnicate")).toEqual([]);
    expect(router.match("POST", "/v1/orders/o1:adjustStock")).toBeUndefined();
  });

  it("percent-decodes path values, %3A and %2F included", () => {
    expect(mustMatch("GET", "/v1/users/a%2Fb%20c").params).toEqual({ user_id: "a/b c" });
    expect(mustMatch("GET", "/v1/products/a%3Ab").params).toEqual({ product_id: "a:b" });
    expect(mustMatch("POST", "/v1/orders/%C3%A9:cancel").params).toEqual({ order_id: "é" });
    expect(router.match("GET", "/v1/users/%E0%A4%A")).toBeUndefined();
  });

  it("answers undefined for unknown paths and lists allowed verbs for known ones", () => {
    expect(router.match("GET", "/v1/nope")).toBeUndefined();
    expect(router.allowedVerbs("/v1/nope")).toEqual([]);
    expect(router.match("GET", "/v1/products/")).toBeUndefined();
    expect(router.match("GET", "/v1/products/p1/extra")).toBeUndefined();
    expect(router.match("DELETE", "/v1/products/p1")).toBeUndefined();
    expect(router.allowedVerbs("/v1/products/p1")).toEqual(["GET", "PATCH"]);
    expect(router.allowedVerbs("/v1/products")).toEqual(["GET", "POST"]);
    expect(router.allowedVerbs("/v1/users/me")).toEqual(["GET"]);
  });

  it("matches verbs case-insensitively, HEAD as GET", () => {
    expect(mustMatch("get", "/v1/products").route.method.name).toBe("ListProducts");
    expect(mustMatch("HEAD", "/v1/products/p1").route.method.name).toBe("GetProduct");
    expect(router.match("HEAD", "/v1/orders/o1:cancel")).toBeUndefined();
  });

  it("parses templates with custom verbs and dotted variables", () => {
    expect(parsePathTemplate("/v1/products/{product_id}:adjustStock")).toEqual({
      segments: [
        { kind: "literal", value: "v1" },
        { kind: "literal", value: "products" },
        { kind: "any" },
      ],
      variables: [{ fieldPath: "product_id", start: 2, end: 3 }],
      verb: "adjustStock",
    });
    expect(parsePathTemplate("/v1/{name=shelves/*/books/**}").variables).toEqual([
      { fieldPath: "name", start: 1, end: 5 },
    ]);
    expect(() => parsePathTemplate("v1/x")).toThrow();
    expect(() => parsePathTemplate("/v1/{a.}")).toThrow();
  });
});

describe("query parameters", () => {
  it("sets fields by proto name and by JSON name", () => {
    const a = decode(ListPaymentsRequestSchema, "GET", "/v1/payments", "order_id=o1");
    const b = decode(ListPaymentsRequestSchema, "GET", "/v1/payments", "orderId=o1&userId=u1");
    expect(a.orderId).toBe("o1");
    expect(b.orderId).toBe("o1");
    expect(b.userId).toBe("u1");
  });

  it("rejects the same field given twice, under either name", () => {
    const e = invalidArgument(() =>
      decodeRestRequest(
        mustMatch("GET", "/v1/payments"),
        new URLSearchParams("order_id=a&orderId=b"),
        undefined,
      ),
    );
    expect(e.message).toMatch(/order_id/);
  });

  it("parses integers strictly and names the field of a bad value", () => {
    expect(decode(ListProductsRequestSchema, "GET", "/v1/products", "page_size=20").pageSize).toBe(
      20,
    );
    expect(decode(ListProductsRequestSchema, "GET", "/v1/products", "pageSize=-3").pageSize).toBe(
      -3,
    );
    for (const bad of ["abc", "1.5", "12abc", "", "1e3", "99999999999"]) {
      const e = invalidArgument(() =>
        decodeRestRequest(
          mustMatch("GET", "/v1/products"),
          new URLSearchParams({ page_size: bad }),
          undefined,
        ),
      );
      expect(e.message).toMatch(/page_size/);
      expect(e.violations[0]?.field).toBe("page_size");
    }
  });

  it("parses bools and enums (by name or number)", () => {
    const p = decode(
      ListProductsRequestSchema,
      "GET",
      "/v1/products",
      "includeInactive=true&query=lamp",
    );
    expect(p.includeInactive).toBe(true);
    expect(p.query).toBe("lamp");
    expect(
      decode(ListOrdersRequestSchema, "GET", "/v1/orders", "status=ORDER_STATUS_CONFIRMED").status,
    ).toBe(OrderStatus.CONFIRMED);
    expect(decode(ListOrdersRequestSchema, "GET", "/v1/orders", "status=3").status).toBe(
      OrderStatus.CANCELLED,
    );
    const m = mustMatch("GET", "/v1/products");
    expect(
      invalidArgument(() =>
        decodeRestRequest(m, new URLSearchParams("include_inactive=yes"), undefined),
      ).message,
    ).toMatch(/include_inactive/);
    const o = mustMatch("GET", "/v1/orders");
    expect(
      invalidArgument(() => decodeRestRequest(o, new URLSearchParams("status=SHIPPED"), undefined))
        .message,
    ).toMatch(/status/);
  });

  it("rejects unknown query parameters by name", () => {
    const e = invalidArgument(() =>
      decodeRestRequest(
        mustMatch("GET", "/v1/products"),
        new URLSearchParams("page_size=1&colour=red"),
        undefined,
      ),
    );
    expect(e.message).toMatch(/"colour"/);
  });

  it("rejects query parameters for fields bound by the path or a body", () => {
    const path = invalidArgument(() =>
      decodeRestRequest(
        mustMatch("GET", "/v1/orders/o1"),
        new URLSearchParams("order_id=o2"),
        undefined,
      ),
    );
    expect(path.message).toMatch(/order_id.*path/);
    const star = invalidArgument(() =>
      decodeRestRequest(mustMatch("POST", "/v1/orders"), new URLSearchParams("paymentToken=t"), {}),
    );
    expect(star.message).toMatch(/paymentToken/);
    const field = invalidArgument(() =>
      decodeRestRequest(
        mustMatch("PATCH", "/v1/products/p1"),
        new URLSearchParams("product.name=x"),
        {},
      ),
    );
    expect(field.message).toMatch(/product\.name.*body/);
  });
});

describe("bodies and path parameters", () => {
  it('decodes body "*" as the whole request', () => {
    const pid = "7f0c1d9e-1111-4222-8333-944455556666";
    const req = decode(PlaceOrderRequestSchema, "POST", "/v1/orders", "", {
      items: [{ productId: pid, quantity: 2 }],
      payment_token: "tok_visa",
    });
    expect(req.items).toHaveLength(1);
    expect(req.items[0]?.productId).toBe(pid);
    expect(req.items[0]?.quantity).toBe(2);
    expect(req.paymentToken).toBe("tok_visa");
  });

  it('lets the path win over body "*" values', () => {
    const req = decode(AdjustStockRequestSchema, "POST", "/v1/products/p1:adjustStock", "", {
      productId: "other",
      delta: -4,
      reason: "damaged",
    });
    expect(req.productId).toBe("p1");
    expect(req.delta).toBe(-4);
    expect(req.reason).toBe("damaged");
  });

  it('treats a missing body "*" as an empty request', () => {
    const req = decode(CancelOrderRequestSchema, "POST", "/v1/orders/o1:cancel");
    expect(req.orderId).toBe("o1");
    expect(req.reason).toBe("");
  });

  it('decodes body "product" into the product field', () => {
    const req = decode(CreateProductRequestSchema, "POST", "/v1/products", "", {
      sku: "LAMP-1",
      name: "Lamp",
      price: { currencyCode: "EUR", amount: "1999" },
      stock: 5,
    });
    expect(req.product?.sku).toBe("LAMP-1");
    expect(req.product?.price?.amount).toBe(1999n);
    expect(req.product?.stock).toBe(5);
  });

  it("sets a dotted path variable into the body message and parses update_mask", () => {
    const req = decode(
      UpdateProductRequestSchema,
      "PATCH",
      "/v1/products/p1",
      "update_mask=name,price",
      { id: "not-this-one", name: "New name" },
    );
    expect(req.product?.id).toBe("p1");
    expect(req.product?.name).toBe("New name");
    expect(req.updateMask?.paths).toEqual(["name", "price"]);
    const camel = decode(
      UpdateProductRequestSchema,
      "PATCH",
      "/v1/products/p1",
      "updateMask=name,createTime&updateMask=active",
      { name: "x" },
    );
    expect(camel.updateMask?.paths).toEqual(["name", "create_time", "active"]);
    // Without a body the dotted path still creates the nested message.
    const bare = decode(
      UpdateProductRequestSchema,
      "PATCH",
      "/v1/products/p1",
      "updateMask=active",
    );
    expect(bare.product?.id).toBe("p1");
    const bad = invalidArgument(() =>
      decodeRestRequest(
        mustMatch("PATCH", "/v1/products/p1"),
        new URLSearchParams("update_mask=na me"),
        {},
      ),
    );
    expect(bad.message).toMatch(/update_mask/);
  });

  it("rejects unknown JSON fields with the protobuf-es message", () => {
    const star = invalidArgument(() =>
      decodeRestRequest(mustMatch("POST", "/v1/orders"), new URLSearchParams(), { itmes: [] }),
    );
    expect(star.message).toMatch(/key "itmes" is unknown/);
    const field = invalidArgument(() =>
      decodeRestRequest(mustMatch("POST", "/v1/products"), new URLSearchParams(), {
        sku: "A1",
        pirce: 1,
      }),
    );
    expect(field.message).toMatch(/key "pirce" is unknown/);
  });

  it("rejects JSON of the wrong type, and bodies that are not objects", () => {
    const wrong = invalidArgument(() =>
      decodeRestRequest(mustMatch("POST", "/v1/products/p1:adjustStock"), new URLSearchParams(), {
        delta: "lots",
      }),
    );
    expect(wrong.message).toMatch(/AdjustStockRequest\.delta.*int32/);
    for (const body of [[], "x", 3, null]) {
      invalidArgument(() =>
        decodeRestRequest(mustMatch("POST", "/v1/orders"), new URLSearchParams(), body),
      );
      invalidArgument(() =>
        decodeRestRequest(mustMatch("POST", "/v1/products"), new URLSearchParams(), body),
      );
    }
  });

  it("keeps uuids opaque in path parameters", () => {
    const id = "0b7e1a2c-3d4e-4f50-8a61-72839405a6b7";
    expect(decode(GetPaymentRequestSchema, "GET", `/v1/payments/${id}`).paymentId).toBe(id);
  });
});

describe("responses", () => {
  const product = {
    id: "0b7e1a2c-3d4e-4f50-8a61-72839405a6b7",
    sku: "LAMP-1",
    name: "Lamp",
    price: { currencyCode: "USD", amount: 1999n },
    stock: 0,
    active: true,
    createTime: timestampFromDate(new Date("2025-01-02T03:04:05Z")),
  };

  it("returns the response_body field alone, zero values included, int64 as strings", () => {
    const route = mustMatch("GET", "/v1/products/x").route;
    const json = encodeRestResponse(route, create(GetProductResponseSchema, { product }));
    expect(json).toEqual({
      id: product.id,
      sku: "LAMP-1",
      name: "Lamp",
      description: "",
      price: { currencyCode: "USD", amount: "1999" },
      stock: 0,
      active: true,
      createTime: "2025-01-02T03:04:05Z",
    });
  });

  it("returns {} for an unset response_body message rather than nothing", () => {
    const route = mustMatch("GET", "/v1/products/x").route;
    const json = encodeRestResponse(route, create(GetProductResponseSchema)) as Record<
      string,
      unknown
    >;
    expect(json["id"]).toBe("");
    expect(json["stock"]).toBe(0);
  });

  it("returns the whole response without response_body", () => {
    const list = encodeRestResponse(
      mustMatch("GET", "/v1/products").route,
      create(ListProductsResponseSchema, { products: [product] }),
    ) as Record<string, unknown>;
    expect(list["nextPageToken"]).toBe("");
    expect((list["products"] as unknown[])[0]).toMatchObject({ sku: "LAMP-1", stock: 0 });
    const login = encodeRestResponse(
      mustMatch("POST", "/v1/auth/login").route,
      create(LoginResponseSchema, { accessToken: "a", tokenType: "Bearer", expiresIn: 900 }),
    );
    expect(login).toMatchObject({
      accessToken: "a",
      refreshToken: "",
      tokenType: "Bearer",
      expiresIn: 900,
    });
  });
});

// ---------------------------------------------------------------------------
// A synthetic contract, for what the shop protos do not exercise: a variable route
// declared before a literal one, additional_bindings, `**`, repeated / int64 / bytes /
// nested / well-known query fields, and contract mistakes caught at construction.

function syntheticService(
  methods: { name: string; rule: MessageInitShape<typeof HttpRuleSchema> }[],
): DescService {
  const T = FieldDescriptorProto_Type;
  const L = FieldDescriptorProto_Label;
  const f = (name: string, number: number, type: FieldDescriptorProto_Type, typeName?: string) => ({
    name,
    number,
    type,
    label: L.OPTIONAL,
    // protoc always fills json_name; protobuf-es takes it as given.
    jsonName: name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
    ...(typeName === undefined ? {} : { typeName }),
  });
  const file = create(FileDescriptorProtoSchema, {
    name: "test/v1/things.proto",
    package: "test.v1",
    syntax: "proto3",
    dependency: ["google/protobuf/timestamp.proto", "google/protobuf/wrappers.proto"],
    messageType: [
      { name: "Inner", field: [f("label", 1, T.STRING), f("level", 2, T.INT32)] },
      {
        name: "ThingRequest",
        field: [
          f("id", 1, T.STRING),
          f("n", 2, T.INT32),
          { ...f("tags", 3, T.STRING), label: L.REPEATED },
          { ...f("nums", 4, T.INT64), label: L.REPEATED },
          f("inner", 5, T.MESSAGE, ".test.v1.Inner"),
          f("data", 6, T.BYTES),
          f("ratio", 7, T.DOUBLE),
          f("since", 8, T.MESSAGE, ".google.protobuf.Timestamp"),
          f("name", 9, T.STRING),
          f("limit", 10, T.MESSAGE, ".google.protobuf.Int32Value"),
        ],
      },
      { name: "Thing", field: [f("id", 1, T.STRING), f("big", 2, T.INT64)] },
    ],
    service: [
      {
        name: "ThingService",
        method: methods.map(({ name, rule }) => {
          const options = create(MethodOptionsSchema);
          setExtension(options, http, create(HttpRuleSchema, rule));
          return {
            name,
            inputType: ".test.v1.ThingRequest",
            outputType: ".test.v1.Thing",
            options,
          };
        }),
      },
    ],
  });
  const registry = createFileRegistry(file, (name) =>
    name === "google/protobuf/timestamp.proto"
      ? file_google_protobuf_timestamp
      : name === "google/protobuf/wrappers.proto"
        ? file_google_protobuf_wrappers
        : undefined,
  );
  const service = registry.getService("test.v1.ThingService");
  if (service === undefined) throw new Error("synthetic service missing");
  return service;
}

describe("synthetic contract", () => {
  const service = syntheticService([
    {
      name: "GetThing",
      rule: {
        pattern: { case: "get", value: "/v1/things/{id}" },
        additionalBindings: [{ pattern: { case: "get", value: "/v2/things/{id}" } }],
      },
    },
    { name: "GetSpecial", rule: { pattern: { case: "get", value: "/v1/things/special" } } },
    {
      name: "ListBooks",
      rule: { pattern: { case: "get", value: "/v1/{name=shelves/*/books/**}" } },
    },
    { name: "ListThings", rule: { pattern: { case: "get", value: "/v1/things" } } },
  ]);
  const r = createRestRouter([service]);
  const get = (path: string) => {
    const m = r.match("GET", path);
    if (m === undefined) throw new Error(`no route for ${path}`);
    return m;
  };
  const input = service.methods[0]?.input;

  it("prefers a literal segment even when the variable route is declared first", () => {
    expect(get("/v1/things/special").route.method.name).toBe("GetSpecial");
    expect(get("/v1/things/other").route.method.name).toBe("GetThing");
  });

  it("routes additional_bindings and multi-segment variables", () => {
    expect(get("/v2/things/t1").route.method.name).toBe("GetThing");
    expect(get("/v2/things/t1").params).toEqual({ id: "t1" });
    expect(get("/v1/shelves/s1/books/a/b%20c").params).toEqual({ name: "shelves/s1/books/a/b c" });
    expect(get("/v1/shelves/s1/books").params).toEqual({ name: "shelves/s1/books" });
    expect(r.match("GET", "/v1/shelves/s1/novels/a")).toBeUndefined();
  });

  it("fills repeated, int64, bytes, double, nested and well-known fields from the query", () => {
    const msg = decodeRestRequest(
      get("/v1/things"),
      new URLSearchParams(
        "tags=a&tags=b&nums=1&nums=-9223372036854775808&inner.label=x&inner.level=3" +
          "&data=AQID&ratio=0.5&since=2025-01-01T00:00:00Z&limit=7",
      ),
      undefined,
    );
    if (input === undefined) throw new Error("no input");
    expect(toJson(input, msg)).toEqual({
      tags: ["a", "b"],
      nums: ["1", "-9223372036854775808"],
      inner: { label: "x", level: 3 },
      data: "AQID",
      ratio: 0.5,
      since: "2025-01-01T00:00:00Z",
      limit: 7,
    });
  });

  it("names the field of bad or repeated values", () => {
    const m = get("/v1/things");
    const cases: [string, RegExp][] = [
      ["n=1&n=2", /field n\b.*single value/],
      ["nums=9223372036854775808", /field nums/],
      ["ratio=fast", /field ratio/],
      ["data=*!", /field data/],
      ["since=yesterday", /field since/],
      ["inner=x", /unknown query parameter "inner"/],
      ["inner.colour=x", /unknown query parameter "inner.colour"/],
    ];
    for (const [query, pattern] of cases) {
      expect(
        invalidArgument(() => decodeRestRequest(m, new URLSearchParams(query), undefined)).message,
      ).toMatch(pattern);
    }
    expect(
      invalidArgument(() =>
        decodeRestRequest(get("/v1/things/t1"), new URLSearchParams("id=t2"), undefined),
      ).message,
    ).toMatch(/bound by the path/);
  });

  it("refuses contracts whose annotations do not fit their messages, at construction", () => {
    const bad = (rule: MessageInitShape<typeof HttpRuleSchema>) => () =>
      createRestRouter([syntheticService([{ name: "M", rule }])]);
    expect(bad({ pattern: { case: "get", value: "/v1/{nope}" } })).toThrow(
      /names no request field/,
    );
    expect(bad({ pattern: { case: "get", value: "/v1/{inner}" } })).toThrow(/singular scalar/);
    expect(bad({ pattern: { case: "get", value: "/v1/{tags}" } })).toThrow(/singular scalar/);
    expect(bad({ pattern: { case: "post", value: "/v1/x" }, body: "nope" })).toThrow(/body "nope"/);
    expect(bad({ pattern: { case: "get", value: "/v1/x" }, responseBody: "nope" })).toThrow(
      /response_body "nope"/,
    );
    expect(() =>
      createRestRouter([
        syntheticService([
          { name: "A", rule: { pattern: { case: "get", value: "/v1/things/{id}" } } },
          { name: "B", rule: { pattern: { case: "get", value: "/v1/things/{name}" } } },
        ]),
      ]),
    ).toThrow(/ambiguous/);
  });
});
