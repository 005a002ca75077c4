/**
 * REST transcoding driven by the `google.api.http` annotations of the contracts.
 *
 * Exports `createRestRouter` (routes read from the protobuf-es descriptors at run
 * time, for any list of services), `decodeRestRequest` (path + query + JSON body →
 * request message), `encodeRestResponse` (response message → JSON, honouring
 * `response_body`), plus `parsePathTemplate` and `queryParameters`, which the OpenAPI
 * generator shares so that the document and the transcoder can never disagree.
 *
 * Nothing here knows a single method by name: the REST surface is defined in the
 * protos and nowhere else (DESIGN.md, Contracts). Pure functions, no I/O.
 */
import {
  create,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromJson,
  getOption,
  type JsonObject,
  type JsonValue,
  type Message,
  ScalarType,
  toJson,
} from "@bufbuild/protobuf";
import { isReflectList, type ReflectMessage, reflect } from "@bufbuild/protobuf/reflect";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { http } from "@shopmesh/gen/google/api/annotations_pb.js";
import type { HttpRule } from "@shopmesh/gen/google/api/http_pb.js";
import { type FieldViolation, InvalidArgumentError } from "@shopmesh/runtime";

export type RestVerb = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/** One `google.api.http` binding (the main rule or one of its additional_bindings). */
export interface RestRoute {
  verb: RestVerb;
  /** The path template exactly as written in the proto, e.g. `/v1/products/{product_id}:adjustStock`. */
  template: string;
  method: DescMethod;
  /** `""` (no body), `"*"` (the whole request) or the name of a top-level request field. */
  body: string;
  /** `""` (the whole response) or the name of a top-level response field. */
  responseBody: string;
}

export interface RestMatch {
  route: RestRoute;
  /** Template variable (proto field path such as `product.id`) → percent-decoded value. */
  params: Record<string, string>;
}

export interface RestRouter {
  routes: RestRoute[];
  /** The route for a verb (HEAD counts as GET) and a raw, still percent-encoded pathname. */
  match(verb: string, pathname: string): RestMatch | undefined;
  /** Verbs some route accepts for this pathname; non-empty + no match means 405. */
  allowedVerbs(pathname: string): string[];
}

/** One segment of a parsed template: a literal, `*` (one segment) or `**` (the rest). */
export type TemplateSegment =
  | { kind: "literal"; value: string }
  | { kind: "any" }
  | { kind: "rest" };

/** A template variable: the field it binds and the segments [start, end) it spans. */
export interface TemplateVariable {
  fieldPath: string;
  start: number;
  /** Exclusive end; equal to `segments.length` when the variable ends in `**`. */
  end: number;
}

export interface PathTemplate {
  segments: TemplateSegment[];
  variables: TemplateVariable[];
  /** The custom verb after the last `:` (e.g. `cancel`), or undefined. */
  verb: string | undefined;
}

/** A request field that can be set from the query string of a route. */
export interface QueryParameter {
  /** Proto field path, e.g. `page_size` or `product.name`. */
  protoPath: string;
  /** JSON (lowerCamelCase) field path, e.g. `pageSize`. */
  jsonPath: string;
  /** The leaf field (a scalar, enum, list of those, or a string-encoded well-known type). */
  field: DescField;
}

const verbs: Record<string, RestVerb> = {
  get: "GET",
  post: "POST",
  put: "PUT",
  patch: "PATCH",
  delete: "DELETE",
};

/**
 * Parses a `google.api.http` path template:
 * `"/" Segment { "/" Segment } [ ":" Verb ]`, a segment being a literal, `*`, `**` or
 * `{field.path}` / `{field.path=segments}`.
 */
export function parsePathTemplate(template: string): PathTemplate {
  // Templates come from the protos, so there are few: each is parsed once (the request
  // path asks for its route's template on every call).
  let parsed = parsedTemplates.get(template);
  if (parsed === undefined) {
    parsed = parseTemplate(template);
    parsedTemplates.set(template, parsed);
  }
  return parsed;
}

const parsedTemplates = new Map<string, PathTemplate>();

function parseTemplate(template: string): PathTemplate {
  if (!template.startsWith("/")) throw new Error(`path template must start with "/": ${template}`);
  let path = template.slice(1);
  let verb: string | undefined;
  // The verb is the text after the last ":" that is not inside a {variable}.
  const lastBrace = path.lastIndexOf("}");
  const colon = path.indexOf(":", lastBrace + 1);
  if (colon >= 0) {
    verb = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (verb === "" || verb.includes("/")) throw new Error(`bad custom verb in ${template}`);
  }
  const segments: TemplateSegment[] = [];
  const variables: TemplateVariable[] = [];
  let i = 0;
  const addSegment = (text: string) => {
    if (text === "*") segments.push({ kind: "any" });
    else if (text === "**") segments.push({ kind: "rest" });
    else if (text === "" || /[{}=]/.test(text))
      throw new Error(`bad segment "${text}" in ${template}`);
    else segments.push({ kind: "literal", value: text });
  };
  while (i < path.length) {
    if (path[i] === "{") {
      const close = path.indexOf("}", i);
      if (close < 0) throw new Error(`unclosed variable in ${template}`);
      const inner = path.slice(i + 1, close);
      const eq = inner.indexOf("=");
      const fieldPath = eq < 0 ? inner : inner.slice(0, eq);
      if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(fieldPath)) {
        throw new Error(`bad variable "${inner}" in ${template}`);
      }
      const start = segments.length;
      for (const part of eq < 0 ? ["*"] : inner.slice(eq + 1).split("/")) addSegment(part);
      variables.push({ fieldPath, start, end: segments.length });
      i = close + 1;
      if (i < path.length && path[i] !== "/") throw new Error(`text after variable in ${template}`);
      i++;
    } else {
      const slash = path.indexOf("/", i);
      const end = slash < 0 ? path.length : slash;
      addSegment(path.slice(i, end));
      i = end + 1;
    }
  }
  if (path.endsWith("/")) throw new Error(`trailing "/" in ${template}`);
  const restAt = segments.findIndex((s) => s.kind === "rest");
  if (restAt >= 0 && restAt !== segments.length - 1) {
    throw new Error(`"**" must be the last segment in ${template}`);
  }
  return { segments, variables, verb };
}

// ---------------------------------------------------------------------------
// Field resolution shared by path variables, query parameters and OpenAPI.

const wrapperTypes = new Set(
  ["Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes"].map(
    (n) => `google.protobuf.${n}Value`,
  ),
);
/** Well-known message types with a string JSON form, so a query or path value can carry them. */
const stringMessageTypes = new Set([
  "google.protobuf.FieldMask",
  "google.protobuf.Timestamp",
  "google.protobuf.Duration",
]);

/** Can a single string (path segment or query value) set this field? */
function isStringSettable(field: DescField): boolean {
  switch (field.fieldKind) {
    case "scalar":
    case "enum":
      return true;
    case "list":
      // Repeated query parameters fill a list; lists of messages have no string form.
      return field.listKind !== "message";
    case "message":
      return (
        stringMessageTypes.has(field.message.typeName) || wrapperTypes.has(field.message.typeName)
      );
    default:
      return false;
  }
}

/** Can a dotted path step through this field into a nested message? */
function isTraversable(field: DescField): field is DescField & { fieldKind: "message" } {
  return (
    field.fieldKind === "message" &&
    !stringMessageTypes.has(field.message.typeName) &&
    !wrapperTypes.has(field.message.typeName) &&
    !field.message.typeName.startsWith("google.protobuf.")
  );
}

function findField(
  message: DescMessage,
  name: string,
  allowJsonName: boolean,
): DescField | undefined {
  return message.fields.find((f) => f.name === name || (allowJsonName && f.jsonName === name));
}

/** Resolves a dotted path to its chain of fields, or undefined when some step does not exist. */
function resolvePath(
  message: DescMessage,
  path: string,
  allowJsonName: boolean,
): DescField[] | undefined {
  const chain: DescField[] = [];
  let current: DescMessage | undefined = message;
  for (const part of path.split(".")) {
    if (current === undefined) return undefined;
    const field = findField(current, part, allowJsonName);
    if (field === undefined) return undefined;
    chain.push(field);
    current = isTraversable(field) ? field.message : undefined;
  }
  return chain;
}

const protoPathOf = (chain: DescField[]) => chain.map((f) => f.name).join(".");
const jsonPathOf = (chain: DescField[]) => chain.map((f) => f.jsonName).join(".");

// ---------------------------------------------------------------------------
// Router

interface CompiledRoute {
  route: RestRoute;
  template: PathTemplate;
  /** Per-segment precedence ranks (literal 0, `*` 1, `**` 2): lower is more specific. */
  ranks: number[];
}

/** Raw pathname → raw segments and raw custom verb; undefined when it is not a path at all. */
function splitPathname(
  pathname: string,
): { segments: string[]; verb: string | undefined } | undefined {
  if (!pathname.startsWith("/")) return undefined;
  const segments = pathname.slice(1).split("/");
  const last = segments[segments.length - 1] ?? "";
  // The last ":" of the last segment starts the custom verb (as in the template grammar).
  // It is split before percent-decoding, so an id containing ":" can be sent as "%3A".
  const colon = last.lastIndexOf(":");
  if (colon < 0) return { segments, verb: undefined };
  segments[segments.length - 1] = last.slice(0, colon);
  return { segments, verb: last.slice(colon + 1) };
}

function decodeSegment(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined; // malformed percent-encoding: the path matches nothing (404)
  }
}

/** Matches raw segments against a template; returns the decoded variables or undefined. */
function matchTemplate(
  t: PathTemplate,
  raw: { segments: string[]; verb: string | undefined },
): Record<string, string> | undefined {
  const rawVerb = raw.verb === undefined ? undefined : decodeSegment(raw.verb);
  if (rawVerb !== t.verb) return undefined;
  const segs = raw.segments;
  const hasRest = t.segments[t.segments.length - 1]?.kind === "rest";
  if (hasRest ? segs.length < t.segments.length - 1 : segs.length !== t.segments.length) {
    return undefined;
  }
  const decoded: string[] = [];
  for (const [i, seg] of segs.entries()) {
    const ts = t.segments[Math.min(i, t.segments.length - 1)];
    const value = decodeSegment(seg);
    if (ts === undefined || value === undefined) return undefined;
    if (ts.kind === "literal" && value !== ts.value) return undefined;
    // A variable never binds an empty segment: "/v1/products/" is not GetProduct("").
    if (ts.kind === "any" && seg === "") return undefined;
    decoded.push(value);
  }
  const params: Record<string, string> = {};
  for (const v of t.variables) {
    const end = v.end === t.segments.length && hasRest ? decoded.length : v.end;
    params[v.fieldPath] = decoded.slice(v.start, end).join("/");
  }
  return params;
}

function compareRanks(a: CompiledRoute, b: CompiledRoute): number {
  for (let i = 0; i < Math.min(a.ranks.length, b.ranks.length); i++) {
    const d = (a.ranks[i] ?? 0) - (b.ranks[i] ?? 0);
    if (d !== 0) return d;
  }
  return b.ranks.length - a.ranks.length;
}

function rulesOf(method: DescMethod): HttpRule[] {
  const rule = getOption(method, http);
  // Only the main rule may carry additional_bindings (one level deep, per http.proto).
  return [rule, ...rule.additionalBindings];
}

function compileRoute(method: DescMethod, rule: HttpRule): CompiledRoute | undefined {
  const where = `${method.parent.typeName}.${method.name}`;
  let verb: RestVerb;
  let template: string;
  if (rule.pattern.case === undefined) return undefined;
  if (rule.pattern.case === "custom") {
    const kind = rule.pattern.value.kind.toUpperCase();
    if (!Object.values(verbs).includes(kind as RestVerb)) {
      throw new Error(`${where}: unsupported custom HTTP verb ${rule.pattern.value.kind}`);
    }
    verb = kind as RestVerb;
    template = rule.pattern.value.path;
  } else {
    const v = verbs[rule.pattern.case];
    if (v === undefined) return undefined;
    verb = v;
    template = rule.pattern.value;
  }
  const parsed = parsePathTemplate(template);
  // Contract mistakes fail at start-up, not on the first request that hits them.
  for (const v of parsed.variables) {
    const chain = resolvePath(method.input, v.fieldPath, false);
    const leaf = chain?.[chain.length - 1];
    if (chain === undefined || leaf === undefined || protoPathOf(chain) !== v.fieldPath) {
      throw new Error(`${where}: path variable {${v.fieldPath}} names no request field`);
    }
    if (leaf.fieldKind === "list" || !isStringSettable(leaf)) {
      throw new Error(`${where}: path variable {${v.fieldPath}} must be a singular scalar field`);
    }
  }
  if (
    rule.body !== "" &&
    rule.body !== "*" &&
    findField(method.input, rule.body, false) === undefined
  ) {
    throw new Error(`${where}: body "${rule.body}" names no top-level request field`);
  }
  if (
    rule.responseBody !== "" &&
    findField(method.output, rule.responseBody, false) === undefined
  ) {
    throw new Error(
      `${where}: response_body "${rule.responseBody}" names no top-level response field`,
    );
  }
  const ranks = parsed.segments.map((s) => (s.kind === "literal" ? 0 : s.kind === "any" ? 1 : 2));
  return {
    route: { verb, template, method, body: rule.body, responseBody: rule.responseBody },
    template: parsed,
    ranks,
  };
}

/**
 * Builds the router for every unary method with a `google.api.http` rule. Streaming
 * methods are left to Connect/gRPC: a REST response is one JSON document.
 * Throws at construction when an annotation is inconsistent with its messages.
 */
export function createRestRouter(services: DescService[]): RestRouter {
  const compiled: CompiledRoute[] = [];
  for (const service of services) {
    for (const method of service.methods) {
      if (method.methodKind !== "unary") continue;
      for (const rule of rulesOf(method)) {
        const c = compileRoute(method, rule);
        if (c !== undefined) compiled.push(c);
      }
    }
  }
  // Literal segments beat variables position by position (GET /v1/users/me is GetMe,
  // not GetUser("me")); a stable sort keeps proto order among equals.
  compiled.sort(compareRanks);
  const seen = new Map<string, string>();
  for (const c of compiled) {
    const shape = `${c.route.verb} ${c.ranks.join(",")}:${c.template.segments
      .map((s) => (s.kind === "literal" ? s.value : "*"))
      .join("/")}:${c.template.verb ?? ""}`;
    const other = seen.get(shape);
    if (other !== undefined) {
      throw new Error(`${c.route.verb} ${c.route.template} is ambiguous with ${other}`);
    }
    seen.set(shape, `${c.route.method.parent.typeName}.${c.route.method.name}`);
  }

  return {
    routes: compiled.map((c) => c.route),
    match(verb, pathname) {
      const raw = splitPathname(pathname);
      if (raw === undefined) return undefined;
      // HEAD is GET without a body (RFC 9110 §9.3.2); Node drops the body of a HEAD reply.
      const upper = verb.toUpperCase() === "HEAD" ? "GET" : verb.toUpperCase();
      for (const c of compiled) {
        if (c.route.verb !== upper) continue;
        const params = matchTemplate(c.template, raw);
        if (params !== undefined) return { route: c.route, params };
      }
      return undefined;
    },
    allowedVerbs(pathname) {
      const raw = splitPathname(pathname);
      if (raw === undefined) return [];
      const found = new Set<string>();
      for (const c of compiled) {
        if (matchTemplate(c.template, raw) !== undefined) found.add(c.route.verb);
      }
      return [...found].sort();
    },
  };
}

// ---------------------------------------------------------------------------
// Requests

function invalid(
  message: string,
  field?: string,
  rule = "rest",
  cause?: unknown,
): InvalidArgumentError {
  const violations: FieldViolation[] = field === undefined ? [] : [{ field, rule, message }];
  return new InvalidArgumentError(message, violations, cause === undefined ? undefined : { cause });
}

const INT32 = /^-?\d+$/;
const UINT = /^\d+$/;
const FLOAT = /^-?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Parses one text value for a scalar type, strictly; throws a plain Error saying what was expected. */
function parseScalar(type: ScalarType, text: string): unknown {
  switch (type) {
    case ScalarType.STRING:
      return text;
    case ScalarType.BOOL:
      if (text === "true") return true;
      if (text === "false") return false;
      throw new Error("expected true or false");
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32: {
      const n = INT32.test(text) ? Number(text) : Number.NaN;
      if (!(n >= -(2 ** 31) && n < 2 ** 31)) throw new Error("expected a 32-bit integer");
      return n;
    }
    case ScalarType.UINT32:
    case ScalarType.FIXED32: {
      const n = UINT.test(text) ? Number(text) : Number.NaN;
      if (!(n < 2 ** 32)) throw new Error("expected an unsigned 32-bit integer");
      return n;
    }
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64: {
      const n = INT32.test(text) ? BigInt(text) : undefined;
      if (n === undefined || n < -(2n ** 63n) || n >= 2n ** 63n) {
        throw new Error("expected a 64-bit integer");
      }
      return n;
    }
    case ScalarType.UINT64:
    case ScalarType.FIXED64: {
      const n = UINT.test(text) ? BigInt(text) : undefined;
      if (n === undefined || n >= 2n ** 64n) throw new Error("expected an unsigned 64-bit integer");
      return n;
    }
    case ScalarType.FLOAT:
    case ScalarType.DOUBLE: {
      if (text === "NaN") return Number.NaN;
      if (text === "Infinity") return Number.POSITIVE_INFINITY;
      if (text === "-Infinity") return Number.NEGATIVE_INFINITY;
      const n = FLOAT.test(text) ? Number(text) : Number.NaN;
      const max = type === ScalarType.FLOAT ? 3.4028234663852886e38 : Number.MAX_VALUE;
      if (!(Math.abs(n) <= max)) throw new Error("expected a number");
      return n;
    }
    case ScalarType.BYTES:
      if (!BASE64.test(text)) throw new Error("expected base64");
      return base64Decode(text);
  }
  throw new Error("unsupported type");
}

function parseEnum(field: DescField, text: string): number {
  const en = field.enum;
  if (en === undefined) throw new Error("not an enum");
  const byName = en.values.find((v) => v.name === text || v.jsonName === text);
  if (byName !== undefined) return byName.number;
  if (INT32.test(text)) {
    const n = Number(text);
    // Open (proto3) enums keep unknown numbers; closed ones only take declared values.
    if (n >= -(2 ** 31) && n < 2 ** 31 && (en.open || en.value[n] !== undefined)) return n;
  }
  throw new Error(`expected one of ${en.values.map((v) => v.name).join(", ")}`);
}

/** `update_mask=name,createTime` → FieldMask{paths: ["name", "create_time"]}. */
function parseFieldMask(texts: string[]): Message {
  const paths: string[] = [];
  for (const text of texts) {
    for (const part of text.split(",")) {
      const p = part.trim();
      if (p === "") continue;
      // Accept proto (snake) and JSON (camel) spellings; the message carries proto paths.
      const snake = p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      if (!/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$/.test(snake)) {
        throw new Error(`bad field path "${p}"`);
      }
      paths.push(snake);
    }
  }
  return create(FieldMaskSchema, { paths });
}

/** Sets a leaf field from one or more text values (path segment or query parameter). */
function setFromText(target: ReflectMessage, field: DescField, texts: string[]): void {
  switch (field.fieldKind) {
    case "scalar":
      target.set(field, parseScalar(field.scalar, single(texts)));
      return;
    case "enum":
      target.set(field, parseEnum(field, single(texts)));
      return;
    case "list": {
      const list = target.get(field);
      if (!isReflectList(list)) throw new Error("not a list");
      for (const t of texts) {
        list.add(
          field.listKind === "enum"
            ? parseEnum(field, t)
            : parseScalar(field.scalar ?? ScalarType.STRING, t),
        );
      }
      return;
    }
    case "message": {
      const type = field.message.typeName;
      let value: Message;
      if (type === "google.protobuf.FieldMask") {
        value = parseFieldMask(texts);
      } else if (wrapperTypes.has(type)) {
        const inner = field.message.fields[0];
        if (inner?.fieldKind !== "scalar") throw new Error("unsupported wrapper");
        const r = reflect(field.message);
        r.set(inner, parseScalar(inner.scalar, single(texts)));
        value = r.message;
      } else {
        try {
          value = fromJson(field.message, single(texts));
        } catch (e) {
          // protobuf-es says "cannot decode message google.protobuf.Timestamp from JSON: …".
          throw new Error(e instanceof Error ? e.message : String(e));
        }
      }
      target.set(field, reflect(field.message, value));
      return;
    }
  }
  throw new Error("unsupported field");
}

function single(texts: string[]): string {
  if (texts.length !== 1) throw new Error("expected a single value, got several");
  return texts[0] ?? "";
}

/** Walks (creating as needed) to the message holding the leaf of `chain`. */
function parentOf(root: ReflectMessage, chain: DescField[]): ReflectMessage {
  let current = root;
  for (const f of chain.slice(0, -1)) {
    if (f.fieldKind !== "message") throw new Error(`${f.name} is not a message`);
    // Dotted paths create nested messages; an existing one (e.g. from the body) is kept.
    if (!current.isSet(f)) current.set(f, reflect(f.message));
    current = current.get(f);
  }
  return current;
}

function isPlainObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fromJsonOrInvalid(schema: DescMessage, json: JsonValue): Message {
  try {
    // Unknown fields are rejected (grpc-gateway ignores them by default): a typo such as
    // "pirce" would otherwise silently do nothing, which is worse for a client than a 400.
    return fromJson(schema, json, { ignoreUnknownFields: false });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw invalid(message, undefined, "rest.body", e);
  }
}

/**
 * The fields a route can take from the query string: every string-settable leaf of the
 * request not bound by the path or the body (none when the body is `*`). Nested
 * messages are walked (`product.name`) except through recursive types.
 */
export function queryParameters(route: RestRoute): QueryParameter[] {
  if (route.body === "*") return [];
  const bound = new Set(parsePathTemplate(route.template).variables.map((v) => v.fieldPath));
  const out: QueryParameter[] = [];
  const walk = (message: DescMessage, prefix: DescField[], seen: Set<string>) => {
    for (const field of message.fields) {
      const chain = [...prefix, field];
      if (prefix.length === 0 && field.name === route.body) continue;
      const protoPath = protoPathOf(chain);
      if (bound.has(protoPath)) continue;
      if (isStringSettable(field)) {
        out.push({ protoPath, jsonPath: jsonPathOf(chain), field });
      } else if (isTraversable(field) && !seen.has(field.message.typeName)) {
        walk(field.message, chain, new Set([...seen, field.message.typeName]));
      }
    }
  };
  walk(route.method.input, [], new Set([route.method.input.typeName]));
  return out;
}

/** Resolves a query key (proto or JSON spelling) to its field chain, or throws INVALID_ARGUMENT. */
function resolveQueryKey(route: RestRoute, key: string, bound: Set<string>): DescField[] {
  if (route.body === "*") {
    throw invalid(
      `unknown query parameter "${key}": the JSON body carries the whole request`,
      key,
      "rest.query",
    );
  }
  const chain = resolvePath(route.method.input, key, true);
  const leaf = chain?.[chain.length - 1];
  if (chain === undefined || leaf === undefined || !isStringSettable(leaf)) {
    throw invalid(`unknown query parameter "${key}"`, key, "rest.query");
  }
  const protoPath = protoPathOf(chain);
  if (chain[0]?.name === route.body) {
    throw invalid(`query parameter "${key}" is bound by the request body`, protoPath, "rest.query");
  }
  if (bound.has(protoPath)) {
    throw invalid(`query parameter "${key}" is bound by the path`, protoPath, "rest.query");
  }
  return chain;
}

/**
 * Builds the request message of a matched route: first the JSON body (per the route's
 * body rule), then the query string, then the path variables, which win over both.
 * Every client mistake is an InvalidArgumentError naming the parameter or field.
 */
export function decodeRestRequest(m: RestMatch, query: URLSearchParams, body: unknown): Message {
  const { route } = m;
  const input = route.method.input;
  let message: Message;
  if (route.body === "*") {
    // An absent body is an empty request (e.g. POST …:cancel without a reason).
    if (body !== undefined && !isPlainObject(body)) {
      throw invalid("request body must be a JSON object", undefined, "rest.body");
    }
    message = fromJsonOrInvalid(input, (body ?? {}) as JsonObject);
  } else if (route.body !== "") {
    const field = findField(input, route.body, false);
    if (field === undefined) throw new Error(`no field ${route.body}`); // checked at construction
    if (body === undefined) {
      message = create(input);
    } else {
      if (isTraversable(field) && !isPlainObject(body)) {
        throw invalid(
          `request body (${field.name}) must be a JSON object`,
          field.name,
          "rest.body",
        );
      }
      // Wrapping lets protobuf-es apply the full proto3 JSON mapping to any field kind.
      message = fromJsonOrInvalid(input, { [field.jsonName]: body as JsonValue });
    }
  } else {
    // No body rule (GET and friends): a body, if any, is ignored as grpc-gateway does.
    message = create(input);
  }

  const root = reflect(input, message);
  const template = parsePathTemplate(route.template);
  const bound = new Set(template.variables.map((v) => v.fieldPath));

  // Group values by field so that `order_id=…&orderId=…` counts as two values of one field.
  const byField = new Map<string, { chain: DescField[]; key: string; values: string[] }>();
  for (const key of new Set(query.keys())) {
    const chain = resolveQueryKey(route, key, bound);
    const protoPath = protoPathOf(chain);
    const entry = byField.get(protoPath) ?? { chain, key, values: [] };
    entry.values.push(...query.getAll(key));
    byField.set(protoPath, entry);
  }
  for (const [protoPath, { chain, key, values }] of byField) {
    const leaf = chain[chain.length - 1];
    if (leaf === undefined) continue;
    try {
      setFromText(parentOf(root, chain), leaf, values);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw invalid(
        `invalid query parameter "${key}" (field ${protoPath}): ${why}`,
        protoPath,
        "rest.query",
        e,
      );
    }
  }

  for (const [fieldPath, value] of Object.entries(m.params)) {
    const chain = resolvePath(input, fieldPath, false);
    const leaf = chain?.[chain.length - 1];
    if (chain === undefined || leaf === undefined) throw new Error(`no field ${fieldPath}`);
    try {
      setFromText(parentOf(root, chain), leaf, [value]);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw invalid(`invalid path parameter {${fieldPath}}: ${why}`, fieldPath, "rest.path", e);
    }
  }
  return root.message;
}

// ---------------------------------------------------------------------------
// Responses

/**
 * The JSON body for a response: proto3 JSON (lowerCamelCase names, int64 as strings,
 * enums by name) of the whole message or of its `response_body` field.
 *
 * Zero values are emitted (`alwaysEmitImplicit`): a client reading `stock` gets 0, not
 * a missing key it has to default itself. Unset message fields stay absent.
 */
export function encodeRestResponse(route: RestRoute, response: Message): JsonValue {
  const output = route.method.output;
  const opts = { alwaysEmitImplicit: true } as const;
  if (route.responseBody === "") return toJson(output, response, opts);
  const field = findField(output, route.responseBody, false);
  if (field === undefined) throw new Error(`no field ${route.responseBody}`); // checked at construction
  if (field.fieldKind === "message") {
    // The response_body message is the whole HTTP body: an unset one is `{}`, not a missing key.
    const value = reflect(output, response).get(field);
    return toJson(field.message, value.message, opts);
  }
  const whole = toJson(output, response, opts) as JsonObject;
  return whole[field.jsonName] ?? null;
}
