/**
 * `npm run check:k8s`: the Kubernetes delivery, checked offline (no cluster, no Docker).
 *
 *   1. helm lint --strict, with the defaults and every helm/shopmesh/ci/*-values.yaml;
 *   2. helm template of each of those value sets, every object validated against its
 *      schema, every workload checked for resources, probes and securityContext, and the
 *      references between objects resolved (scripts/k8s/validate.ts);
 *   3. skaffold.yaml and each profile against the vendored skaffold schema;
 *   4. the Dockerfile's structure (scripts/k8s/dockerfile.ts);
 *   5. .github/workflows with actionlint.
 *
 *   npm run check:k8s                          everything
 *   npm run check:k8s -- --values FILE ...     only the chart, with these values files
 *
 * Exit 1 with one line per finding. helm and actionlint are pinned and installed with
 * `go install` on first use (scripts/k8s-tools.sh).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import {
  CHART_DIR,
  type K8sObject,
  lintChart,
  parseManifests,
  ROOT,
  templateChart,
} from "./k8s/chart.js";
import { checkDockerfile } from "./k8s/dockerfile.js";
import { checkSkaffold } from "./k8s/skaffold.js";
import { checkManifests, type Finding } from "./k8s/validate.js";

/** A value set the chart must render cleanly with. */
export interface Combination {
  name: string;
  values: string[];
  /** Secrets it expects to exist outside the release. */
  externalSecrets?: string[];
}

/** Defaults first; then every ci/*-values.yaml (each must be listed here). */
export const COMBINATIONS: Combination[] = [
  { name: "defaults", values: [] },
  { name: "mesh", values: ["helm/shopmesh/ci/mesh-values.yaml"] },
  { name: "gateway", values: ["helm/shopmesh/ci/gateway-values.yaml"] },
  { name: "mesh + gateway", values: ["helm/shopmesh/ci/mesh-gateway-values.yaml"] },
  {
    name: "external stores",
    values: ["helm/shopmesh/ci/external-stores-values.yaml"],
    externalSecrets: ["shopmesh-postgres-admin"],
  },
  { name: "ci (kind job)", values: ["helm/shopmesh/ci/ci-values.yaml"] },
  {
    name: "custom services",
    values: ["helm/shopmesh/ci/custom-services-values.yaml"],
    externalSecrets: ["shopmesh-signing-key", "shopmesh-orders-database"],
  },
];

export interface ChartCheck {
  combination: Combination;
  objects: K8sObject[];
  findings: Finding[];
}

/** lint + template + every manifest check, for one value set. */
export function checkChart(combination: Combination): ChartCheck {
  const { name, values, externalSecrets } = combination;
  const findings: Finding[] = [];
  const lint = lintChart({ values });
  if (!lint.ok) findings.push({ object: `helm lint (${name})`, message: lint.output });
  const rendered = templateChart({ values });
  if (!rendered.ok) {
    findings.push({ object: `helm template (${name})`, message: rendered.output });
    return { combination, objects: [], findings };
  }
  let objects: K8sObject[] = [];
  try {
    objects = parseManifests(rendered.output);
  } catch (err) {
    findings.push({ object: `helm template (${name})`, message: (err as Error).message });
    return { combination, objects, findings };
  }
  findings.push(...checkManifests(objects, externalSecrets ? { externalSecrets } : {}));
  return { combination, objects, findings };
}

function actionlint(): Finding[] {
  const dir = join(ROOT, ".github", "workflows");
  if (!existsSync(dir)) return [];
  const tool = spawnSync("bash", [join(ROOT, "scripts", "k8s-tools.sh"), "actionlint"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const bin = tool.stdout.trim();
  if (tool.status !== 0 || !bin) return [{ object: "actionlint", message: "not available" }];
  const res = spawnSync(bin, ["-no-color"], { cwd: ROOT, encoding: "utf8" });
  if (res.status === 0) return [];
  return [{ object: ".github/workflows", message: `${res.stdout}${res.stderr}`.trim() }];
}

function main(argv: string[]): number {
  const started = performance.now();
  const only: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--values" && argv[i + 1]) only.push(argv[++i] as string);
    else {
      process.stderr.write(`check:k8s: unknown argument ${argv[i]}\n`);
      return 2;
    }
  }
  const findings: Finding[] = [];
  const step = (label: string, run: () => Finding[]) => {
    const t = performance.now();
    const found = run();
    findings.push(...found);
    const took = ((performance.now() - t) / 1000).toFixed(1);
    process.stdout.write(`${found.length === 0 ? "ok  " : "FAIL"} ${label} (${took} s)\n`);
  };

  const combinations = only.length ? [{ name: only.join(" + "), values: only }] : COMBINATIONS;
  if (only.length === 0) {
    const listed = new Set(COMBINATIONS.flatMap((c) => c.values));
    for (const file of readdirSync(join(CHART_DIR, "ci"))) {
      const path = relative(ROOT, join(CHART_DIR, "ci", file));
      if (file.endsWith("-values.yaml") && !listed.has(path)) {
        findings.push({ object: path, message: "not in COMBINATIONS of scripts/check-k8s.ts" });
      }
    }
  }
  let defaults: K8sObject[] = [];
  let objectCount = 0;
  for (const combination of combinations) {
    step(`chart: ${combination.name}`, () => {
      const result = checkChart(combination);
      if (combination.name === "defaults") defaults = result.objects;
      objectCount += result.objects.length;
      return result.findings;
    });
  }
  if (only.length === 0) {
    const services = defaults
      .filter((o) => o.kind === "Deployment" && o.metadata.labels?.["app.kubernetes.io/part-of"])
      .map((o) => o.metadata.labels?.["app.kubernetes.io/component"] ?? "")
      .filter((c) => c !== "jaeger");
    step("skaffold.yaml and its profiles", () => checkSkaffold({ services, rendered: defaults }));
    step("Dockerfile", () => checkDockerfile());
    step(".github/workflows (actionlint)", () => actionlint());
  }

  for (const f of findings) process.stdout.write(`  ${f.object}: ${f.message}\n`);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const summary = `${combinations.length} value sets, ${objectCount} objects`;
  if (findings.length > 0) {
    process.stdout.write(
      `check:k8s FAILED: ${findings.length} findings (${summary}) in ${seconds} s\n`,
    );
    return 1;
  }
  process.stdout.write(`check:k8s ok (${summary}) in ${seconds} s\n`);
  return 0;
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  process.exitCode = main(process.argv.slice(2));
}
