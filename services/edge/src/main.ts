/** The edge process: config, keys, downstream clients, the server, signals. */
import { createIdentityVerifier, createLogger, onShutdown } from "@shopmesh/runtime";
import { loadEdgeConfig } from "./config.js";
import { createDownstreams } from "./gateway.js";
import { createRateLimiter } from "./rate-limit.js";
import { createEdgeServer } from "./server.js";

const config = loadEdgeConfig();
const logger = createLogger("edge");
const verifier = createIdentityVerifier(config);
const server = createEdgeServer({
  config,
  logger,
  verifier,
  limiter: createRateLimiter(config.RATE_LIMIT_RPS, config.RATE_LIMIT_BURST),
  downstreams: createDownstreams(config),
});
const port = await server.listen(config.PORT);
logger.info({ port, url: `http://localhost:${port}` }, "ready");
onShutdown(logger, [{ name: "http", run: () => server.close() }]);
