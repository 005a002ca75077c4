/**
 * An OpenAPI 3.1 document for the REST surface, generated from the same descriptors
 * and the same route table (`createRestRouter`) the edge transcodes with, so the
 * document cannot drift from what the edge accepts.
 *
 * Exports `buildOpenApi` and `DEFAULT_PUBLIC_METHODS`. Schemas follow the proto3 JSON
 * mapping that `encodeRestResponse` / `decodeRestRequest` speak: lowerCamelCase names,
 * 64-bit integers as strings, enums by value name, Timestamp as RFC 3339, FieldMask as
 * a comma-separated string.
 */
import {
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescService,
  ScalarType,
} from "@bufbuild/protobuf";
import { createRestRouter, parsePathTemplate, queryParameters, type RestRoute } from "./rest.js";

type Schema = Record<string, unknown>;

export interface OpenApiInfo {
  title: string;
  version: string;
  /** Base URL of the edge (e.g. "/" or "https://api.example.com"); omitted when undefined. */
  serverUrl?: string;
  /** Fully qualified method names callable without a token; DEFAULT_PUBLIC_METHODS when absent. */
  publicMethods?: Iterable<string>;
}

/**
 * Methods that need no access token (the edge lets them through unauthenticated).
 * Everything else carries the bearer requirement in the document.
 */
export const DEFAULT_PUBLIC_METHODS: ReadonlySet<string> = new Set([
  "shop.identity.v1.IdentityService.Register",
  "shop.identity.v1.IdentityService.Login",
  "shop.identity.v1.IdentityService.Refresh",
  "shop.catalog.v1.CatalogService.ListProducts",
  "shop.catalog.v1.CatalogService.GetProduct",
]);

const ERROR_SCHEMA = "Error";
const BEARER = "bearerAuth";

// ---------------------------------------------------------------------------
// Comments. The descriptors embedded by protoc-gen-es carry no source info, so this
// usually finds nothing and callers fall back to names; descriptors loaded from a
// `buf build` image (which keeps source info) get their proto comments.

function sourcePathOf(desc: DescMessage | DescEnum | DescField): number[] | undefined {
  switch (desc.kind) {
    case "message": {
      if (desc.parent === undefined) return [4, desc.file.proto.messageType.indexOf(desc.proto)];
      const parent = sourcePathOf(desc.parent);
      return parent && [...parent, 3, desc.parent.proto.nestedType.indexOf(desc.proto)];
    }
    case "enum": {
      if (desc.parent === undefined) return [5, desc.file.proto.enumType.indexOf(desc.proto)];
      const parent = sourcePathOf(desc.parent);
      return parent && [...parent, 4, desc.parent.proto.enumType.indexOf(desc.proto)];
    }
    case "field": {
      const parent = sourcePathOf(desc.parent);
      return parent && [...parent, 2, desc.parent.proto.field.indexOf(desc.proto)];
    }
  }
}

function commentAt(file: DescService["file"], path: number[] | undefined): string | undefined {
  if (path === undefined) return undefined;
  const location = file.proto.sourceCodeInfo?.location.find(
    (l) => l.path.length === path.length && l.path.every((p, i) => p === path[i]),
  );
  const text = location?.leadingComments.trim();
  return text ? text.replace(/\n /g, "\n") : undefined;
}

function describe(desc: DescMessage | DescEnum | DescField): string | undefined {
  const file = desc.kind === "field" ? desc.parent.file : desc.file;
  return commentAt(file, sourcePathOf(desc));
}

// ---------------------------------------------------------------------------
// Schemas (proto3 JSON mapping)

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });

function scalarSchema(type: ScalarType): Schema {
  switch (type) {
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "int64", minimum: 0, maximum: 4294967295 };
    // proto3 JSON writes 64-bit integers as strings: a JS number cannot hold them.
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return { type: "string", format: "int64", pattern: "^-?[0-9]+$" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "string", format: "uint64", pattern: "^[0-9]+$" };
    case ScalarType.FLOAT:
      return { type: "number", format: "float" };
    case ScalarType.DOUBLE:
      return { type: "number", format: "double" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BYTES:
      return { type: "string", format: "byte", contentEncoding: "base64" };
  }
  return {};
}

/** Well-known types have their own JSON forms and are inlined rather than referenced. */
function wellKnownSchema(message: DescMessage): Schema | undefined {
  const name = message.typeName;
  switch (name) {
    case "google.protobuf.Timestamp":
      return { type: "string", format: "date-time" };
    case "google.protobuf.Duration":
      return { type: "string", pattern: "^-?[0-9]+(\\.[0-9]{1,9})?s$", examples: ["3.5s"] };
    case "google.protobuf.FieldMask":
      return { type: "string", description: "Comma-separated field paths, e.g. `name,price`." };
    case "google.protobuf.Struct":
      return { type: "object", additionalProperties: true };
    case "google.protobuf.Value":
      return {};
    case "google.protobuf.ListValue":
      return { type: "array", items: {} };
    case "google.protobuf.Empty":
      return { type: "object", additionalProperties: false };
    case "google.protobuf.Any":
      return {
        type: "object",
        properties: { "@type": { type: "string" } },
        required: ["@type"],
        additionalProperties: true,
      };
  }
  if (name.startsWith("google.protobuf.") && name.endsWith("Value")) {
    // Wrappers: the JSON of the wrapped scalar, or null when unset.
    const inner = message.fields[0];
    if (inner?.fieldKind === "scalar") {
      const s = scalarSchema(inner.scalar);
      return { ...s, type: [s["type"], "null"] };
    }
  }
  return undefined;
}

class SchemaRegistry {
  readonly schemas: Record<string, Schema> = {};

  message(message: DescMessage): Schema {
    const wkt = wellKnownSchema(message);
    if (wkt !== undefined) return wkt;
    const name = message.typeName;
    if (this.schemas[name] === undefined) {
      // Reserve the name first: recursive messages refer to themselves.
      this.schemas[name] = {};
      this.schemas[name] = this.objectSchema(message, new Set(), describe(message) ?? name);
    }
    return ref(name);
  }

  enum(en: DescEnum): Schema {
    const name = en.typeName;
    this.schemas[name] ??= {
      type: "string",
      enum: en.values.map((v) => v.name),
      description: describe(en) ?? `${en.name}. Parsers also accept the numeric value.`,
    };
    return ref(name);
  }

  /** The object schema of a message, leaving out top-level fields in `omit`. */
  objectSchema(message: DescMessage, omit: Set<string>, description?: string): Schema {
    const properties: Record<string, Schema> = {};
    for (const field of message.fields) {
      if (omit.has(field.name)) continue;
      properties[field.jsonName] = this.field(field);
    }
    return {
      type: "object",
      ...(description === undefined ? {} : { description }),
      properties,
      additionalProperties: false,
    };
  }

  field(field: DescField): Schema {
    const schema = this.valueOf(field);
    const description = describe(field);
    return description === undefined ? schema : { ...schema, description };
  }

  private valueOf(field: DescField): Schema {
    switch (field.fieldKind) {
      case "scalar":
        return scalarSchema(field.scalar);
      case "enum":
        return this.enum(field.enum);
      case "message":
        return this.message(field.message);
      case "list": {
        const items =
          field.listKind === "scalar"
            ? scalarSchema(field.scalar)
            : field.listKind === "enum"
              ? this.enum(field.enum)
              : this.message(field.message);
        return { type: "array", items };
      }
      case "map": {
        const values =
          field.mapKind === "scalar"
            ? scalarSchema(field.scalar)
            : field.mapKind === "enum"
              ? this.enum(field.enum)
              : this.message(field.message);
        // JSON object keys are strings whatever the proto key type.
        return { type: "object", additionalProperties: values };
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Paths and operations

/**
 * OpenAPI path parameter names. `{product.id}` would be legal (OAS 3.1.1 allows any
 * character but braces in a template expression), but OpenAPI forbids two templated
 * paths of the same shape with different names, and `/v1/products/{product_id}` (GET)
 * and `/v1/products/{product.id}` (PATCH) are exactly that. So names are taken from
 * the first route of each shape, dots turned into underscores (friendlier to client
 * generators), and every parameter's description names the request field it binds.
 */
function openApiPaths(routes: RestRoute[]): Map<RestRoute, { path: string; names: string[] }> {
  const byShape = new Map<string, string[]>();
  const out = new Map<RestRoute, { path: string; names: string[] }>();
  for (const route of routes) {
    const t = parsePathTemplate(route.template);
    const shape = shapeOf(route.template);
    let names = byShape.get(shape);
    if (names === undefined) {
      names = uniqueNames(t.variables.map((v) => v.fieldPath.replace(/\./g, "_")));
      byShape.set(shape, names);
    }
    let i = 0;
    const path = route.template.replace(/\{[^}]*\}/g, () => `{${names[i++] ?? ""}}`);
    out.set(route, { path, names });
  }
  return out;
}

const shapeOf = (template: string) => template.replace(/\{[^}]*\}/g, "{}");

function uniqueNames(names: string[]): string[] {
  const seen = new Set<string>();
  return names.map((n) => {
    let name = n;
    for (let k = 2; seen.has(name); k++) name = `${n}_${k}`;
    seen.add(name);
    return name;
  });
}

const responseSchema = (registry: SchemaRegistry, route: RestRoute): Schema => {
  if (route.responseBody === "") return registry.message(route.method.output);
  const field = route.method.output.fields.find((f) => f.name === route.responseBody);
  return field === undefined ? {} : registry.field(field);
};

function requestBody(registry: SchemaRegistry, route: RestRoute): Schema | undefined {
  if (route.body === "") return undefined;
  const input = route.method.input;
  let schema: Schema;
  if (route.body === "*") {
    // Fields bound by the path are not part of the body (the path wins anyway).
    const topLevelBound = new Set(
      parsePathTemplate(route.template)
        .variables.filter((v) => !v.fieldPath.includes("."))
        .map((v) => v.fieldPath),
    );
    schema =
      topLevelBound.size === 0
        ? registry.message(input)
        : registry.objectSchema(input, topLevelBound, describe(input) ?? input.typeName);
  } else {
    const field = input.fields.find((f) => f.name === route.body);
    schema = field === undefined ? {} : registry.field(field);
  }
  return {
    // A body "*" may be omitted (an empty request); a named body is the resource itself.
    required: route.body !== "*",
    content: { "application/json": { schema } },
  };
}

function operation(
  registry: SchemaRegistry,
  route: RestRoute,
  names: string[],
  isPublic: boolean,
): Schema {
  const method = route.method;
  const service = method.parent;
  const t = parsePathTemplate(route.template);
  const parameters: Schema[] = [];
  for (const [i, v] of t.variables.entries()) {
    const field = leafField(method.input, v.fieldPath);
    parameters.push({
      name: names[i],
      in: "path",
      required: true,
      description: `Request field \`${v.fieldPath}\`.`,
      schema: field === undefined ? { type: "string" } : registry.field(field),
    });
  }
  for (const q of queryParameters(route)) {
    // The transcoder takes the proto spelling too; say so rather than list both.
    const alias = q.protoPath === q.jsonPath ? "" : `Also accepted as \`${q.protoPath}\`.`;
    const description =
      [describe(q.field), alias].filter(Boolean).join(" ") || `Request field \`${q.protoPath}\`.`;
    parameters.push({
      name: q.jsonPath,
      in: "query",
      required: false,
      description,
      schema: registry.field(q.field),
    });
  }
  const rpc = `/${service.typeName}/${method.name}`;
  const body = requestBody(registry, route);
  const comment = methodComment(route);
  return {
    operationId: `${service.name}_${method.name}`,
    // The first sentence of the proto comment when there is one, else the RPC name.
    summary: comment?.split(/(?<=\.)\s/)[0] ?? method.name,
    description: `${comment ?? method.name}\n\nConnect / gRPC: \`${rpc}\`${
      isPublic ? "" : "\n\nRequires a bearer access token."
    }`,
    tags: [service.name],
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(body === undefined ? {} : { requestBody: body }),
    responses: {
      "200": {
        description: "OK",
        content: { "application/json": { schema: responseSchema(registry, route) } },
      },
      default: {
        description: "Error (INVALID_ARGUMENT → 400, UNAUTHENTICATED → 401, NOT_FOUND → 404, …)",
        content: { "application/json": { schema: ref(ERROR_SCHEMA) } },
      },
    },
    security: isPublic ? [] : [{ [BEARER]: [] }],
    ...(method.deprecated ? { deprecated: true } : {}),
  };
}

function leafField(message: DescMessage, path: string): DescField | undefined {
  let current: DescMessage | undefined = message;
  let field: DescField | undefined;
  for (const part of path.split(".")) {
    field = current?.fields.find((f) => f.name === part);
    current = field?.message;
  }
  return field;
}

function methodComment(route: RestRoute): string | undefined {
  const method = route.method;
  const service = method.parent;
  const si = service.file.proto.service.indexOf(service.proto);
  const mi = service.proto.method.indexOf(method.proto);
  return commentAt(service.file, [6, si, 2, mi]);
}

/**
 * The OpenAPI 3.1 document of every REST route of `services` (see createRestRouter).
 */
export function buildOpenApi(services: DescService[], info: OpenApiInfo): object {
  const routes = createRestRouter(services).routes;
  // Document in proto order (the router sorts by precedence, which reads oddly).
  const order = new Map(services.flatMap((s) => s.methods).map((m, i) => [m, i] as const));
  routes.sort((a, b) => (order.get(a.method) ?? 0) - (order.get(b.method) ?? 0));
  const publicMethods = new Set(info.publicMethods ?? DEFAULT_PUBLIC_METHODS);
  const registry = new SchemaRegistry();
  const names = openApiPaths(routes);
  const paths: Record<string, Record<string, Schema>> = {};
  for (const route of routes) {
    const entry = names.get(route);
    if (entry === undefined) continue;
    const isPublic = publicMethods.has(`${route.method.parent.typeName}.${route.method.name}`);
    const item = paths[entry.path] ?? {};
    item[route.verb.toLowerCase()] = operation(registry, route, entry.names, isPublic);
    paths[entry.path] = item;
  }
  const tags = services
    .filter((s) => routes.some((r) => r.method.parent === s))
    .map((s) => ({
      name: s.name,
      description: commentAt(s.file, [6, s.file.proto.service.indexOf(s.proto)]) ?? `${s.typeName}`,
    }));
  return {
    openapi: "3.1.0",
    info: { title: info.title, version: info.version },
    ...(info.serverUrl === undefined ? {} : { servers: [{ url: info.serverUrl }] }),
    tags,
    paths,
    components: {
      schemas: {
        ...Object.fromEntries(
          Object.entries(registry.schemas).sort(([a], [b]) => a.localeCompare(b)),
        ),
        [ERROR_SCHEMA]: {
          type: "object",
          description:
            "Every non-2xx response. `code` is the status name in lower snake case " +
            '(e.g. "invalid_argument"), as in the Connect protocol.',
          required: ["code", "message"],
          properties: {
            code: { type: "string", examples: ["invalid_argument", "not_found"] },
            message: { type: "string" },
            details: {
              type: "array",
              items: {
                type: "object",
                properties: { "@type": { type: "string" } },
                additionalProperties: true,
              },
            },
          },
        },
      },
      securitySchemes: {
        [BEARER]: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "Access token from POST /v1/auth/login (or /v1/auth/refresh).",
        },
      },
    },
  };
}
