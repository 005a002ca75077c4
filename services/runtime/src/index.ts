/** The shared runtime of every shopmesh service. Nothing domain-specific lives here. */
export * from "./auth.js";
export * from "./breaker.js";
export * from "./bus.js";
export * from "./config.js";
export * from "./context.js";
export * from "./db.js";
export * from "./embedded-postgres.js";
export * from "./errors.js";
export * from "./grpc-client.js";
export * from "./grpc-server.js";
export * from "./health.js";
export * from "./logger.js";
export * from "./outbox.js";
export * from "./page-token.js";
export * from "./reflection.js";
export * from "./shutdown.js";
export * from "./validation.js";
