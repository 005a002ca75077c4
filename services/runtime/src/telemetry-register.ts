/**
 * Loaded before a service's own code: `node --import tsx --import
 * ./services/runtime/src/telemetry-register.ts services/<name>/src/main.ts` (the
 * launcher does this; the image runs the bundled `register.mjs` the same way).
 * Starts the OpenTelemetry SDK when an OTLP endpoint is configured (telemetry.ts).
 */
import { startTelemetry } from "./telemetry.js";

startTelemetry();
