import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "services/*/test/**/*.test.ts",
      "deploy/test/**/*.test.ts",
      "bench/test/**/*.test.ts",
    ],
    globalSetup: ["services/runtime/test/global-setup.ts"],
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
