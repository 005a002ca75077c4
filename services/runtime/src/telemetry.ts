/**
 * The OpenTelemetry SDK of a service process: started by telemetry-register.ts, which
 * every service loads with `node --import` before its own code, and flushed by the
 * runtime's shutdown sequence.
 *
 * On only when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and `OTEL_SDK_DISABLED` is not `true`. The
 * standard variables are honoured by the SDK itself: `OTEL_SERVICE_NAME`,
 * `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)` (default parent-based
 * always-on), `OTEL_BSP_*` (batching), `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` and
 * `..._TIMEOUT`, and `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`: `http/protobuf` (the
 * default: `<endpoint>/v1/traces`, port 4318) or `grpc` (port 4317).
 *
 * The provider is kept on a global symbol, not in a module variable: a bundled image
 * loads this file twice (the --import bundle and the service bundle), and both must
 * see the one provider.
 */
import { basename, dirname } from "node:path";
import { OTLPTraceExporter as OtlpGrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as OtlpHttpExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { instrumentDrizzle } from "./tracing-db.js";

const KEY = Symbol.for("shopmesh.telemetry");

interface Telemetry {
  service: string;
  shutdown(): Promise<void>;
}

type Holder = { [KEY]?: Telemetry };

/** Whether tracing was started in this process. */
export function telemetryEnabled(): boolean {
  return (globalThis as Holder)[KEY] !== undefined;
}

/**
 * Starts tracing when the environment asks for it; a no-op otherwise (and when
 * already started). Returns whether tracing is on.
 */
export function startTelemetry(env: NodeJS.ProcessEnv = process.env): boolean {
  const holder = globalThis as Holder;
  if (holder[KEY] !== undefined) return true;
  const endpoint = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] || env["OTEL_EXPORTER_OTLP_ENDPOINT"];
  if (!endpoint || env["OTEL_SDK_DISABLED"] === "true") return false;
  const service = env["OTEL_SERVICE_NAME"] || serviceFromEntryPoint();
  const protocol =
    env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] ||
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] ||
    "http/protobuf";
  if (protocol !== "grpc" && protocol !== "http/protobuf") {
    process.stderr.write(
      `${service}: config error: OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf\n`,
    );
    process.exit(1);
  }
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": service,
      "service.namespace": "shopmesh",
      "service.instance.id": `${process.pid}`,
    }).merge(detectResources({ detectors: [envDetector] })),
    spanProcessors: [
      new BatchSpanProcessor(protocol === "grpc" ? new OtlpGrpcExporter() : new OtlpHttpExporter()),
    ],
  });
  // Global context manager (AsyncLocalStorage) and W3C propagator, for any library
  // that uses the API; the runtime itself passes parents explicitly.
  provider.register();
  instrumentDrizzle();
  holder[KEY] = { service, shutdown: () => provider.shutdown() };
  return true;
}

/** Exports what is buffered and stops the SDK; bounded by `timeoutMs`. */
export async function shutdownTelemetry(timeoutMs = 3_000): Promise<void> {
  const t = (globalThis as Holder)[KEY];
  if (t === undefined) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    t.shutdown().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/** `services/orders/src/main.ts` or `/app/services/orders/dist/main.mjs` → "orders". */
function serviceFromEntryPoint(): string {
  const entry = process.argv[1];
  if (entry === undefined) return "shopmesh";
  return basename(dirname(dirname(entry))) || "shopmesh";
}
