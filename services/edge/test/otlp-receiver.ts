/**
 * A real OTLP/HTTP trace receiver for tests: `POST /v1/traces` with an
 * `ExportTraceServiceRequest` in protobuf (gzip or not), decoded field by field with
 * protobuf-es's BinaryReader against the opentelemetry-proto schema (trace/v1,
 * resource/v1, common/v1; fields we do not read are skipped as the wire format allows).
 * It answers as a collector does (200, an empty ExportTraceServiceResponse).
 */
import { createServer, type Server } from "node:http";
import { gunzipSync } from "node:zlib";
import { BinaryReader } from "@bufbuild/protobuf/wire";

export type AttributeValue = string | number | boolean | bigint | undefined;

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, AttributeValue>;
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  statusCode: number;
}

export interface OtlpReceiver {
  url: string;
  spans: ReceivedSpan[];
  /** Every request's raw (decompressed) body, for secret scans. */
  bodies: Buffer[];
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const bodies: Buffer[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/traces") {
        res.statusCode = 404;
        res.end();
        return;
      }
      try {
        let body = Buffer.concat(chunks);
        if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
        if (!String(req.headers["content-type"]).startsWith("application/x-protobuf")) {
          throw new Error(`unexpected content-type ${req.headers["content-type"]}`);
        }
        bodies.push(body);
        spans.push(...decodeExportRequest(body));
        res.setHeader("content-type", "application/x-protobuf");
        res.statusCode = 200;
        res.end();
      } catch (err) {
        res.statusCode = 400;
        res.end(String(err));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    bodies,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Calls `field(number, wireType)` for every field of the message in `bytes`. */
function fields(bytes: Uint8Array, field: (r: BinaryReader, no: number, wt: number) => boolean) {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (!field(r, no, wt)) r.skip(wt);
  }
}

/** Every occurrence of length-delimited field `no` (a repeated message, say). */
function messages(bytes: Uint8Array, no: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  fields(bytes, (r, n) => {
    if (n !== no) return false;
    out.push(r.bytes());
    return true;
  });
  return out;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest */
export function decodeExportRequest(bytes: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  fields(bytes, (r, no) => {
    if (no !== 1) return false; // resource_spans
    out.push(...decodeResourceSpans(r.bytes()));
    return true;
  });
  return out;
}

/** ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; } */
function decodeResourceSpans(bytes: Uint8Array): ReceivedSpan[] {
  let resource: Record<string, AttributeValue> = {};
  const scopeSpans: Uint8Array[] = [];
  fields(bytes, (r, no) => {
    if (no === 1) {
      // Resource { repeated KeyValue attributes = 1; }
      resource = Object.fromEntries(messages(r.bytes(), 1).map(decodeKeyValue));
      return true;
    }
    if (no === 2) {
      scopeSpans.push(r.bytes());
      return true;
    }
    return false;
  });
  const service = String(resource["service.name"] ?? "");
  const out: ReceivedSpan[] = [];
  for (const ss of scopeSpans) {
    // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
    for (const span of messages(ss, 2)) out.push(decodeSpan(span, service));
  }
  return out;
}

/**
 * Span { bytes trace_id = 1; bytes span_id = 2; bytes parent_span_id = 4; string name = 5;
 * SpanKind kind = 6; repeated KeyValue attributes = 9; Status status = 15; }
 */
function decodeSpan(bytes: Uint8Array, service: string): ReceivedSpan {
  const span: ReceivedSpan = {
    service,
    traceId: "",
    spanId: "",
    parentSpanId: "",
    name: "",
    kind: 0,
    attributes: {},
    statusCode: 0,
  };
  fields(bytes, (r, no) => {
    switch (no) {
      case 1:
        span.traceId = hex(r.bytes());
        return true;
      case 2:
        span.spanId = hex(r.bytes());
        return true;
      case 4:
        span.parentSpanId = hex(r.bytes());
        return true;
      case 5:
        span.name = r.string();
        return true;
      case 6:
        span.kind = r.int32();
        return true;
      case 9: {
        const [k, v] = decodeKeyValue(r.bytes());
        span.attributes[k] = v;
        return true;
      }
      case 15:
        // Status { string message = 2; StatusCode code = 3; }
        fields(r.bytes(), (rr, n) => {
          if (n !== 3) return false;
          span.statusCode = rr.int32();
          return true;
        });
        return true;
      default:
        return false;
    }
  });
  return span;
}

/** KeyValue { string key = 1; AnyValue value = 2; } */
function decodeKeyValue(bytes: Uint8Array): [string, AttributeValue] {
  let key = "";
  let value: AttributeValue;
  fields(bytes, (r, no) => {
    if (no === 1) {
      key = r.string();
      return true;
    }
    if (no === 2) {
      value = decodeAnyValue(r.bytes());
      return true;
    }
    return false;
  });
  return [key, value];
}

/** AnyValue { string_value = 1; bool_value = 2; int_value = 3; double_value = 4; ... } */
function decodeAnyValue(bytes: Uint8Array): AttributeValue {
  let value: AttributeValue;
  fields(bytes, (r, no) => {
    switch (no) {
      case 1:
        value = r.string();
        return true;
      case 2:
        value = r.bool();
        return true;
      case 3:
        value = Number(r.int64());
        return true;
      case 4:
        value = r.double();
        return true;
      default:
        return false;
    }
  });
  return value;
}
