/**
 * Vite configuration of the storefront: sources in web/, output in web/dist (which the
 * edge serves at `/`). Hashed names under /assets/ let the edge cache them for a year.
 */
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  logLevel: "warn",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npx vite web` during development: the API stays on the edge.
    proxy: { "^/(v1|shop\\.|grpc\\.)": "http://localhost:8080" },
  },
});
