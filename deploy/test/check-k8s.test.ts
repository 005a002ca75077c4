/**
 * check:k8s itself: it passes on the repository as it is, and it fails, naming the
 * problem, on broken values files, broken workloads, a broken skaffold.yaml and a
 * broken Dockerfile.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildService } from "../../scripts/build-service.mjs";
import { COMBINATIONS, checkChart } from "../../scripts/check-k8s.js";
import { type K8sObject, ROOT, renderChart } from "../../scripts/k8s/chart.js";
import { checkDockerfile } from "../../scripts/k8s/dockerfile.js";
import { checkSkaffold } from "../../scripts/k8s/skaffold.js";
import { checkReferences, checkWorkloads, validateSchemas } from "../../scripts/k8s/validate.js";

// biome-ignore lint/suspicious/noExplicitAny: test access into parsed YAML
type Any = any;

/** `npm run check:k8s -- --values <file>`, as a user runs it. */
function checkValues(file: string) {
  const res = spawnSync(
    process.execPath,
    ["--import", "tsx", "scripts/check-k8s.ts", "--values", file],
    { cwd: ROOT, encoding: "utf8" },
  );
  return { status: res.status, output: `${res.stdout}${res.stderr}` };
}

const deployment = (objects: K8sObject[], name: string): Any =>
  structuredClone(objects.find((o) => o.kind === "Deployment" && o.metadata.name === name));

// helm and a Node child process per check: generous bounds for a loaded 2-core machine.
const SLOW = { timeout: 120_000 };

describe("check:k8s on the repository", SLOW, () => {
  it.each(COMBINATIONS.map((c) => [c.name, c] as const))("passes: %s", (_, combination) => {
    const result = checkChart(combination);
    expect(result.findings).toEqual([]);
    expect(result.objects.length).toBeGreaterThan(10);
  });

  it("passes on skaffold.yaml and every profile", () => {
    const rendered = renderChart();
    const services = ["identity", "catalog", "orders", "payments", "notifications", "edge"];
    expect(checkSkaffold({ services, rendered })).toEqual([]);
  });

  it("passes on the Dockerfile", () => {
    expect(checkDockerfile()).toEqual([]);
  });
});

describe("check:k8s fails on a broken values file", SLOW, () => {
  it("a service without resources: rejected by the values schema", () => {
    const { status, output } = checkValues("deploy/test/fixtures/missing-resources-values.yaml");
    expect(status).toBe(1);
    expect(output).toMatch(/FAIL\s+chart:/);
    expect(output).toMatch(/missing propert(y|ies) 'resources'/);
    expect(output).toMatch(/check:k8s FAILED/);
  });

  it("a writable root filesystem: valid values, caught by the workload policy", () => {
    const { status, output } = checkValues("deploy/test/fixtures/writable-root-values.yaml");
    expect(status).toBe(1);
    expect(output).toContain(
      "Deployment/shopmesh-orders: container orders: securityContext.readOnlyRootFilesystem is not true",
    );
    expect(output).toContain(
      "StatefulSet/shopmesh-postgres: container postgres: securityContext.readOnlyRootFilesystem is not true",
    );
  });

  it("an AuthorizationPolicy caller that is no service: the render fails", () => {
    const { status, output } = checkValues("deploy/test/fixtures/unknown-caller-values.yaml");
    expect(status).toBe(1);
    expect(output).toContain(`"ordres" is not a service in this release`);
  });
});

describe("the workload policy", () => {
  const rendered = renderChart();

  it("names a container without resources", () => {
    const d = deployment(rendered, "shopmesh-catalog");
    delete d.spec.template.spec.containers[0].resources;
    expect(checkWorkloads([d]).map((f) => f.message)).toEqual([
      "container catalog: no cpu request (resources.requests.cpu)",
      "container catalog: no memory request (resources.requests.memory)",
      "container catalog: no memory limit (resources.limits.memory)",
    ]);
  });

  it("names a container without probes", () => {
    const d = deployment(rendered, "shopmesh-payments");
    const c = d.spec.template.spec.containers[0];
    delete c.readinessProbe;
    delete c.livenessProbe;
    expect(checkWorkloads([d]).map((f) => f.message)).toEqual([
      "container payments: no readinessProbe",
      "container payments: no livenessProbe",
    ]);
  });

  it("names a container without a securityContext, or one that may run as root", () => {
    const d = deployment(rendered, "shopmesh-edge");
    delete d.spec.template.spec.containers[0].securityContext;
    d.spec.template.spec.securityContext = {};
    const messages = checkWorkloads([d]).map((f) => f.message);
    expect(messages).toContain("container edge: no securityContext");
    expect(messages).toContain(
      "container edge: securityContext.runAsNonRoot is not true (pod or container)",
    );
    expect(messages).toContain(
      "container edge: no seccompProfile (RuntimeDefault or Localhost, pod or container)",
    );
  });

  it("checks init containers too, and images pinned by tag", () => {
    const d = deployment(rendered, "shopmesh-identity");
    const init = d.spec.template.spec.initContainers[0];
    init.image = "postgres:latest";
    delete init.resources;
    const messages = checkWorkloads([d]).map((f) => f.message);
    expect(messages).toContain(
      'initContainer wait-for-database: image "postgres:latest" uses the latest tag',
    );
    expect(messages).toContain(
      "initContainer wait-for-database: no cpu request (resources.requests.cpu)",
    );
  });

  it("rejects what the schema rejects, and a kind it has no schema for", () => {
    const d = deployment(rendered, "shopmesh-orders");
    d.spec.template.spec.containers[0].ports[0].containerPort = "fifty";
    const unknown = { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } };
    const findings = validateSchemas([d, unknown]);
    expect(findings[0]?.message).toMatch(/containerPort must be integer/);
    expect(findings[1]?.message).toBe("no schema for example.com/v1/Widget");
  });

  it("finds references to objects the release does not have", () => {
    const d = deployment(rendered, "shopmesh-orders");
    d.spec.template.spec.serviceAccountName = "nobody";
    const messages = checkReferences([d]).map((f) => f.message);
    expect(messages).toContain("serviceAccountName nobody is not in the release");
    expect(messages).toContain("env DATABASE_URL: Secret shopmesh-orders-db is not in the release");
  });
});

describe("check:k8s on broken delivery files", SLOW, () => {
  const tmp = () => mkdtempSync(join(tmpdir(), "shopmesh-k8s-"));

  it("a skaffold.yaml with an unknown field, or an artifact for no service", () => {
    const dir = tmp();
    try {
      const source = readFileSync(join(ROOT, "skaffold.yaml"), "utf8");
      const file = join(dir, "skaffold.yaml");
      const services = ["identity", "catalog", "orders", "payments", "notifications", "edge"];
      const rendered = renderChart();
      writeFileSync(
        file,
        source.replace("useBuildkit: true", "useBuildkit: true\n    pussh: false"),
      );
      const unknownField = checkSkaffold({ services, rendered, file });
      expect(unknownField[0]?.message).toMatch(/must NOT have additional properties/);
      writeFileSync(file, source.replace("SERVICE: payments", "SERVICE: paymentz"));
      const messages = checkSkaffold({ services, rendered, file }).map((f) => f.message);
      expect(messages).toContain(
        "shopmesh/payments: SERVICE=paymentz has no services/paymentz/src/main.ts",
      );
      expect(messages).toContain("no artifact builds service payments");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a Dockerfile that runs as root or copies from a stage that does not exist", () => {
    const dir = tmp();
    try {
      const source = readFileSync(join(ROOT, "Dockerfile"), "utf8");
      const file = join(dir, "Dockerfile");
      writeFileSync(
        file,
        source.replace("USER 1000:1000", "USER root").replace("--from=deps", "--from=dependencies"),
      );
      const messages = checkDockerfile(file).map((f) => f.message);
      expect(messages).toContain("COPY --from=dependencies: no such earlier stage");
      expect(messages).toContain(
        "USER root: use a numeric non-root uid (runAsNonRoot can only verify numbers)",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the image build (scripts/build-service.mjs)", SLOW, () => {
  it("bundles a service with its migrations beside it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "shopmesh-bundle-"));
    try {
      const file = await buildService("orders", { outdir: dir, quiet: true });
      const bundle = readFileSync(file, "utf8");
      // Our code is inlined; third-party packages are imported from node_modules.
      expect(bundle).not.toMatch(/from ["']@shopmesh\//);
      expect(bundle).toMatch(/from ["']@grpc\/grpc-js["']/);
      expect(bundle).toContain('new URL("./migrations", import.meta.url)');
      const journal = JSON.parse(
        readFileSync(join(dir, "migrations", "meta", "_journal.json"), "utf8"),
      );
      expect(journal.entries.length).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
