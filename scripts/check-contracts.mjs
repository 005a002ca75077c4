#!/usr/bin/env node
// Contract checks (npm run check:contracts): buf lint, buf breaking against the
// previous commit, and gen/ (plus the vendored protovalidate proto) fresh.
// BUF_AGAINST overrides the breaking baseline (any buf input, e.g. ".git#branch=main").
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

let failed = false;
const run = (label, cmd, args) => {
  process.stdout.write(`check:contracts: ${label}\n`);
  const res = spawnSync(cmd, args, { stdio: "inherit" });
  if (res.status !== 0) {
    failed = true;
    process.stdout.write(`check:contracts: FAILED: ${label}\n`);
  }
  return res.status === 0;
};
const git = (...args) => spawnSync("git", args, { encoding: "utf8" });

run("buf lint", "buf", ["lint"]);

// buf breaking against the previous commit.
const against = process.env.BUF_AGAINST;
if (against) {
  run(`buf breaking --against ${against}`, "buf", ["breaking", "--against", against]);
} else if (git("rev-parse", "--verify", "--quiet", "HEAD~1").status !== 0) {
  process.stdout.write(
    "check:contracts: SKIP buf breaking: there is no previous commit to compare with\n",
  );
} else if (git("cat-file", "-e", "HEAD~1:buf.yaml").status !== 0) {
  process.stdout.write(
    "check:contracts: SKIP buf breaking: the previous commit has no buf.yaml (no contracts yet)\n",
  );
} else {
  run("buf breaking against HEAD~1", "buf", ["breaking", "--against", ".git#ref=HEAD~1"]);
}

// gen/ is fresh: generate into a scratch dir and compare.
const scratch = mkdtempSync(join(tmpdir(), "shopmesh-gen-"));
try {
  if (run("buf generate (scratch)", "buf", ["generate", "--output", scratch])) {
    const diff = spawnSync("diff", ["-r", "-q", join(scratch, "gen/ts"), "gen/ts"], {
      encoding: "utf8",
    });
    if (diff.status !== 0) {
      failed = true;
      process.stdout.write(
        `check:contracts: FAILED: gen/ is stale; run \`npm run generate\` and commit.\n${diff.stdout}`,
      );
    } else {
      process.stdout.write("check:contracts: gen/ is fresh\n");
    }
  }
  const vendored = join(scratch, "validate.proto");
  execFileSync("tsx", ["scripts/vendor-protovalidate.ts", vendored]);
  if (
    readFileSync(vendored, "utf8") !== readFileSync("proto/buf/validate/validate.proto", "utf8")
  ) {
    failed = true;
    process.stdout.write(
      "check:contracts: FAILED: proto/buf/validate/validate.proto is stale; run `npm run vendor:protovalidate`.\n",
    );
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

if (failed) process.exit(1);
process.stdout.write("check:contracts: ok\n");
