/** The edge process: config, keys, downstream clients, the server, signals. */
import {
  createIdentityVerifier,
  createLogger,
  onShutdown,
  startAdminServer,
} from "@shopmesh/runtime";
import { loadEdgeConfig } from "./config.js";
import { createDownstreams } from "./gateway.js";
import { createRateLimiter } from "./rate-limit.js";
import { createEdgeServer } from "./server.js";

const config = loadEdgeConfig();
const logger = createLogger("edge");
const admin = await startAdminServer({ port: config.ADMIN_PORT, service: "edge", logger });
const verifier = createIdentityVerifier(config);
const server = createEdgeServer({
  config,
  logger,
  verifier,
  limiter: createRateLimiter(config.RATE_LIMIT_RPS, config.RATE_LIMIT_BURST),
  downstreams: createDownstreams(config),
});
const port = await server.listen(config.PORT, "0.0.0.0", {
  reusePort: config.REUSE_PORT === "1",
});
logger.info({ port, url: `http://localhost:${port}` }, "ready");
// Ready once identity's keys are at hand (as the edge's own /readyz); not ready from
// the first moment of shutdown; the admin port closes last.
admin.readyWhen(async () => (await verifier.jwks()).keys.length > 0);
onShutdown(logger, [
  { name: "readiness", run: async () => admin.drain() },
  { name: "http", run: () => server.close() },
  { name: "admin server", run: () => admin.close() },
]);
