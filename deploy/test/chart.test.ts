/**
 * The rendered chart, service by service: what a cluster needs from each workload
 * (probes, resources, non-root), the Services, identities, autoscalers and budgets, the
 * mesh policy and the gateway. Rendered with the pinned helm, offline.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { deployableServices } from "../../scripts/build-service.mjs";
import { CHART_DIR, type K8sObject, NAMESPACE, renderChart } from "../../scripts/k8s/chart.js";

interface ServiceValues {
  name: string;
  protocol: "grpc" | "http";
  port: number;
  database?: boolean;
  nats?: boolean;
  callers?: { name: string; paths?: string[] }[];
  streamingPaths?: string[];
}

type Obj = Record<string, unknown>;
// Rendered objects are plain data; the tests read them with paths and check shapes
// with expect, so a loose accessor keeps them short.
// biome-ignore lint/suspicious/noExplicitAny: test access into parsed YAML
type Any = any;

const values = parse(readFileSync(join(CHART_DIR, "values.yaml"), "utf8")) as {
  services: ServiceValues[];
  gateway: { controllerNamespace: string };
  mesh: { gatewayNamespaces: string[] };
};
const SERVICES = values.services;
const name = (svc: string) => `shopmesh-${svc}`;
const find = (objects: K8sObject[], kind: string, n: string): Any =>
  objects.find((o) => o.kind === kind && o.metadata.name === n);
const all = (objects: K8sObject[], kind: string): Any[] => objects.filter((o) => o.kind === kind);
const container = (deployment: Any, svc: string): Any =>
  deployment.spec.template.spec.containers.find((c: Obj) => c["name"] === svc);
const env = (c: Any, key: string): Any => c.env.find((e: Obj) => e["name"] === key);

let defaults: K8sObject[];
let meshAndGateway: K8sObject[];

beforeAll(() => {
  defaults = renderChart();
  meshAndGateway = renderChart({ values: ["helm/shopmesh/ci/mesh-gateway-values.yaml"] });
}, 120_000);

describe("the services list", () => {
  it("names every deployable service under services/, once", () => {
    expect(SERVICES.map((s) => s.name).sort()).toEqual(deployableServices());
  });
});

describe.each(SERVICES)("service $name", (svc) => {
  it("has a Deployment with probes, resources and a non-root, locked-down securityContext", () => {
    const d = find(defaults, "Deployment", name(svc.name));
    expect(d, `Deployment ${name(svc.name)}`).toBeDefined();
    const pod = d.spec.template.spec;
    const c = container(d, svc.name);
    expect(c.image).toBe(`shopmesh/${svc.name}:0.1.0`);

    // Probes on the admin port (the runtime's admin server): /healthz, /readyz.
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      expect(c[probe].httpGet.port, probe).toBe("admin");
    }
    expect(c.startupProbe.httpGet.path).toBe("/healthz");
    expect(c.readinessProbe.httpGet.path).toBe("/readyz");
    expect(c.livenessProbe.httpGet.path).toBe("/healthz");
    expect(c.ports).toContainEqual({ name: "admin", containerPort: 9090, protocol: "TCP" });
    expect(env(c, "ADMIN_PORT").value).toBe("9090");
    expect(d.spec.template.metadata.annotations).toMatchObject({
      "prometheus.io/scrape": "true",
      "prometheus.io/port": "9090",
      "prometheus.io/path": "/metrics",
    });
    // Zero-downtime rolling updates: a surge pod, none taken away, and a grace period
    // longer than the preStop sleep plus the runtime's 15 s drain bound.
    expect(d.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(
      c.lifecycle.preStop.sleep.seconds + 15,
    );

    expect(c.resources.requests.cpu).toBeTruthy();
    expect(c.resources.requests.memory).toBeTruthy();
    expect(c.resources.limits.memory).toBeTruthy();

    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.securityContext.seccompProfile.type).toBe("RuntimeDefault");
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(c.lifecycle.preStop.sleep.seconds).toBeGreaterThan(0);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(20);
    expect(pod.topologySpreadConstraints.map((t: Obj) => t["topologyKey"])).toContain(
      "kubernetes.io/hostname",
    );

    expect(env(c, "PORT").value).toBe(String(svc.port));
    if (svc.database) {
      expect(env(c, "DATABASE_URL").valueFrom.secretKeyRef).toEqual({
        name: `${name(svc.name)}-db`,
        key: "url",
      });
      const wait = pod.initContainers.find((i: Obj) => i["name"] === "wait-for-database");
      expect(wait.securityContext.runAsNonRoot).toBe(true);
    } else {
      expect(env(c, "DATABASE_URL")).toBeUndefined();
    }
    if (svc.nats) expect(env(c, "NATS_URL").value).toMatch(/^nats:\/\/shopmesh-nats\./);
  });

  it(`has a Service whose port is named ${svc.protocol === "grpc" ? "grpc" : "http (h2c)"}, and a headless twin`, () => {
    for (const n of [name(svc.name), `${name(svc.name)}-headless`]) {
      const s = find(defaults, "Service", n);
      expect(s, `Service ${n}`).toBeDefined();
      const [port, ...rest] = s.spec.ports;
      expect(rest).toEqual([]);
      expect(port.port).toBe(svc.port);
      if (svc.protocol === "grpc") {
        expect(port.name).toBe("grpc");
        expect(port.appProtocol).toBe("grpc");
      } else {
        expect(port.name).toBe("http");
        expect(port.appProtocol).toBe("kubernetes.io/h2c");
      }
      expect(s.spec.selector["app.kubernetes.io/component"]).toBe(svc.name);
    }
    expect(find(defaults, "Service", `${name(svc.name)}-headless`).spec.clusterIP).toBe("None");
  });

  it("runs as its own ServiceAccount", () => {
    const sa = find(defaults, "ServiceAccount", name(svc.name));
    expect(sa).toBeDefined();
    const d = find(defaults, "Deployment", name(svc.name));
    expect(d.spec.template.spec.serviceAccountName).toBe(name(svc.name));
  });

  it("is autoscaled (the Deployment leaves replicas to the HPA) and has a PDB", () => {
    const hpa = find(defaults, "HorizontalPodAutoscaler", name(svc.name));
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: name(svc.name),
    });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec.maxReplicas).toBeGreaterThanOrEqual(hpa.spec.minReplicas);
    expect(find(defaults, "Deployment", name(svc.name)).spec.replicas).toBeUndefined();
    const pdb = find(defaults, "PodDisruptionBudget", name(svc.name));
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.selector.matchLabels["app.kubernetes.io/component"]).toBe(svc.name);
  });

  it("has an AuthorizationPolicy naming exactly its callers' service accounts", () => {
    const policy = find(meshAndGateway, "AuthorizationPolicy", name(svc.name));
    expect(policy.spec.action).toBe("ALLOW");
    expect(policy.spec.selector.matchLabels["app.kubernetes.io/component"]).toBe(svc.name);
    const rules: Any[] = policy.spec.rules ?? [];
    const principals = rules.flatMap((r) => r.from.flatMap((f: Any) => f.source.principals ?? []));
    const expected = (svc.callers ?? []).map(
      (c) => `cluster.local/ns/${NAMESPACE}/sa/${name(c.name)}`,
    );
    expect(principals.sort()).toEqual(expected.sort());
    for (const caller of svc.callers ?? []) {
      const rule = rules.find((r) =>
        r.from.some((f: Any) =>
          f.source.principals?.includes(`cluster.local/ns/${NAMESPACE}/sa/${name(caller.name)}`),
        ),
      );
      if (caller.paths) expect(rule.to[0].operation.paths).toEqual(caller.paths);
      else expect(rule.to).toBeUndefined();
    }
    const namespaces = rules.flatMap((r) => r.from.flatMap((f: Any) => f.source.namespaces ?? []));
    expect(namespaces).toEqual(svc.name === "edge" ? values.mesh.gatewayNamespaces : []);
  });

  it("has a DestinationRule and a VirtualService in the mesh, none without it", () => {
    const dr = find(meshAndGateway, "DestinationRule", name(svc.name));
    expect(dr.spec.host).toBe(`${name(svc.name)}.${NAMESPACE}.svc.cluster.local`);
    expect(dr.spec.trafficPolicy.tls.mode).toBe("ISTIO_MUTUAL");
    expect(dr.spec.trafficPolicy.outlierDetection.consecutiveGatewayErrors).toBeGreaterThan(0);
    expect(dr.spec.trafficPolicy.connectionPool.http.http2MaxRequests).toBeGreaterThan(0);
    const vs = find(meshAndGateway, "VirtualService", name(svc.name));
    const routes: Any[] = vs.spec.http;
    const fallback = routes.at(-1);
    expect(fallback.retries.retryOn).toContain("unavailable");
    expect(fallback.timeout).toMatch(/^\d+s$/);
    for (const path of svc.streamingPaths ?? []) {
      const stream = routes.find((r) => r.match?.some((m: Any) => m.uri.prefix === path));
      expect(stream.timeout).toBe("0s");
      expect(stream.retries).toBeUndefined();
    }
    expect(find(defaults, "DestinationRule", name(svc.name))).toBeUndefined();
    expect(find(defaults, "VirtualService", name(svc.name))).toBeUndefined();
    const labels = find(meshAndGateway, "Deployment", name(svc.name)).spec.template.metadata.labels;
    expect(labels["sidecar.istio.io/inject"]).toBe("true");
  });
});

describe("addresses", () => {
  const addresses = (objects: K8sObject[]) => find(objects, "ConfigMap", "shopmesh-env").data;

  it("use headless Services and dns:/// (grpc-js round_robin) without the mesh", () => {
    const data = addresses(defaults);
    for (const svc of SERVICES.filter((s) => s.protocol === "grpc")) {
      expect(data[`${svc.name.toUpperCase()}_ADDR`]).toBe(
        `dns:///${name(svc.name)}-headless.${NAMESPACE}.svc.cluster.local:${svc.port}`,
      );
    }
  });

  it("use the ClusterIP Services in the mesh, where the sidecar balances per request", () => {
    const data = addresses(meshAndGateway);
    for (const svc of SERVICES.filter((s) => s.protocol === "grpc")) {
      expect(data[`${svc.name.toUpperCase()}_ADDR`]).toBe(
        `${name(svc.name)}.${NAMESPACE}.svc.cluster.local:${svc.port}`,
      );
    }
  });
});

describe("mesh", () => {
  it("has exactly one PeerAuthentication, STRICT, for the whole namespace", () => {
    const pa = all(meshAndGateway, "PeerAuthentication");
    expect(pa).toHaveLength(1);
    expect(pa[0].spec.mtls.mode).toBe("STRICT");
    expect(pa[0].spec.selector).toBeUndefined();
  });

  it("denies by default: an allow-nothing policy for the namespace", () => {
    const deny = find(meshAndGateway, "AuthorizationPolicy", "shopmesh-deny-all");
    expect(deny.spec).toEqual({});
  });

  it("renders nothing of Istio's when switched off", () => {
    const istio = defaults.filter((o) => o.apiVersion.includes("istio.io"));
    expect(istio).toEqual([]);
  });
});

describe("gateway", { timeout: 120_000 }, () => {
  it("puts a Gateway with an HTTP and a gRPC listener in front of the edge", () => {
    const gw = find(meshAndGateway, "Gateway", "shopmesh-gateway");
    expect(gw.spec.gatewayClassName).toBe("shopmesh-envoy");
    expect(gw.spec.listeners.map((l: Obj) => [l["name"], l["protocol"]])).toEqual([
      ["http", "HTTP"],
      ["grpc", "HTTP"],
    ]);
    const cls = find(meshAndGateway, "GatewayClass", "shopmesh-envoy");
    expect(cls.spec.controllerName).toBe("gateway.envoyproxy.io/gatewayclass-controller");

    const http = find(meshAndGateway, "HTTPRoute", "shopmesh-gateway");
    expect(http.spec.parentRefs).toEqual([{ name: "shopmesh-gateway", sectionName: "http" }]);
    const backends = http.spec.rules.flatMap((r: Any) => r.backendRefs);
    expect(new Set(backends.map((b: Any) => `${b.name}:${b.port}`))).toEqual(
      new Set(["shopmesh-edge:8080"]),
    );
    const catchAll = http.spec.rules.at(-1);
    expect(catchAll.matches).toEqual([{ path: { type: "PathPrefix", value: "/" } }]);
    const streams = http.spec.rules[0];
    expect(streams.timeouts.request).toBe("0s");

    const grpc = find(meshAndGateway, "GRPCRoute", "shopmesh-gateway");
    expect(grpc.spec.parentRefs).toEqual([{ name: "shopmesh-gateway", sectionName: "grpc" }]);
    expect(grpc.spec.rules[0].backendRefs).toEqual([{ name: "shopmesh-edge", port: 8080 }]);
  });

  it("rate-limits both routes with BackendTrafficPolicies, and lets gRPC streams run", () => {
    const policies = all(meshAndGateway, "BackendTrafficPolicy");
    const byTarget = new Map(policies.map((p) => [p.spec.targetRefs[0].kind, p]));
    expect([...byTarget.keys()].sort()).toEqual(["GRPCRoute", "HTTPRoute"]);
    for (const p of policies) {
      expect(p.spec.rateLimit.type).toBe("Local");
      expect(p.spec.rateLimit.local.rules[0].limit.requests).toBeGreaterThan(0);
    }
    expect(byTarget.get("GRPCRoute").spec.timeout.http.requestTimeout).toBe("0s");
  });

  it("joins the gateway's Envoy to the mesh only when the mesh is on", () => {
    const proxy = find(meshAndGateway, "EnvoyProxy", "shopmesh-gateway");
    expect(proxy.spec.routingType).toBe("Service");
    expect(proxy.spec.provider.kubernetes.envoyDeployment.pod.labels).toEqual({
      "sidecar.istio.io/inject": "true",
    });
    const gw = find(meshAndGateway, "Gateway", "shopmesh-gateway");
    expect(gw.spec.infrastructure.parametersRef.name).toBe("shopmesh-gateway");

    const gatewayOnly = renderChart({ values: ["helm/shopmesh/ci/gateway-values.yaml"] });
    expect(all(gatewayOnly, "EnvoyProxy")).toEqual([]);
    expect(find(gatewayOnly, "Gateway", "shopmesh-gateway").spec.infrastructure).toBeUndefined();
    expect(find(gatewayOnly, "HTTPRoute", "shopmesh-gateway").spec.hostnames).toEqual([
      "shop.localtest.me",
    ]);
  });

  it("renders no gateway objects when switched off", () => {
    expect(defaults.filter((o) => o.apiVersion.startsWith("gateway."))).toEqual([]);
  });
});

describe("data stores", { timeout: 120_000 }, () => {
  it("gives each service with a database its own role, database and Secret", () => {
    for (const svc of SERVICES.filter((s) => s.database)) {
      const secret = find(defaults, "Secret", `${name(svc.name)}-db`);
      const url = new URL(secret.stringData.url);
      expect(url.username).toBe(svc.name);
      expect(url.pathname).toBe(`/${svc.name}`);
      expect(url.password).toBe(secret.stringData.password);
      expect(secret.stringData.password).toMatch(/^[A-Za-z0-9]{32}$/);
      expect(url.host).toBe(`shopmesh-postgres.${NAMESPACE}.svc.cluster.local:5432`);
    }
    const script = find(defaults, "ConfigMap", "shopmesh-postgres-bootstrap").data["bootstrap.sh"];
    for (const svc of SERVICES.filter((s) => s.database)) {
      expect(script).toContain(`ROLE="${svc.name}"`);
    }
    const job = find(defaults, "Job", "shopmesh-postgres-bootstrap");
    expect(job.metadata.annotations["helm.sh/hook"]).toBe("post-install,post-upgrade");
  });

  it("runs PostgreSQL, NATS with JetStream and Jaeger v2 in the release by default", () => {
    expect(find(defaults, "StatefulSet", "shopmesh-postgres")).toBeDefined();
    const nats = find(defaults, "StatefulSet", "shopmesh-nats");
    expect(nats.spec.template.spec.containers[0].args).toContain("--jetstream");
    const jaeger = find(defaults, "Deployment", "shopmesh-jaeger");
    expect(jaeger.spec.template.spec.containers[0].image).toMatch(/^jaegertracing\/jaeger:2\./);
    const env = find(defaults, "ConfigMap", "shopmesh-env").data;
    expect(env.OTEL_EXPORTER_OTLP_ENDPOINT).toBe(
      `http://shopmesh-jaeger.${NAMESPACE}.svc.cluster.local:4317`,
    );
  });

  it("switches each store off for an external one", () => {
    const external = renderChart({ values: ["helm/shopmesh/ci/external-stores-values.yaml"] });
    expect(all(external, "StatefulSet")).toEqual([]);
    expect(find(external, "Deployment", "shopmesh-jaeger")).toBeUndefined();
    const orders = container(find(external, "Deployment", "shopmesh-orders"), "orders");
    expect(env(orders, "NATS_URL").value).toBe("nats://nats.data.svc.cluster.local:4222");
    const url = new URL(find(external, "Secret", "shopmesh-orders-db").stringData.url);
    expect(url.host).toBe("postgres.data.svc.cluster.local:5432");
    expect(url.searchParams.get("sslmode")).toBe("require");
    const job = find(external, "Job", "shopmesh-postgres-bootstrap");
    const adminUrl = job.spec.template.spec.containers[0].env.find(
      (e: Obj) => e["name"] === "ADMIN_URL",
    );
    expect(adminUrl.valueFrom.secretKeyRef.name).toBe("shopmesh-postgres-admin");
    expect(find(external, "ConfigMap", "shopmesh-env").data.OTEL_EXPORTER_OTLP_ENDPOINT).toBe(
      "http://otel-collector.observability.svc.cluster.local:4317",
    );
  });

  it("refuses a grace period the drain does not fit in, and a domain service HPA below 2", () => {
    expect(() => renderChart({ set: { terminationGracePeriodSeconds: 20 } })).toThrow(
      /terminationGracePeriodSeconds \(20\) must exceed preStopSleepSeconds \+ 15 s of drain \(20\)/,
    );
    expect(() =>
      renderChart({ values: ["deploy/test/fixtures/single-replica-values.yaml"] }),
    ).toThrow(/services\[orders\].autoscaling.minReplicas must be at least 2/);
  });

  it("refuses an external database without credentials", () => {
    expect(() => renderChart({ set: { "postgres.enabled": false } })).toThrow(
      /neither externalPostgres.adminSecret nor databaseSecret/,
    );
  });
});

describe("Grafana dashboards", { timeout: 120_000 }, () => {
  it("ships each dashboards/*.json as a ConfigMap the Grafana sidecar picks up", () => {
    const chartDir = mkdtempSync(join(tmpdir(), "shopmesh-chart-"));
    try {
      cpSync(CHART_DIR, chartDir, { recursive: true });
      const dashboard = { title: "shopmesh RED", panels: [], schemaVersion: 39 };
      writeFileSync(join(chartDir, "dashboards", "red.json"), JSON.stringify(dashboard));
      const objects = renderChart({ chartDir });
      const cm = find(objects, "ConfigMap", "shopmesh-dashboard-red");
      expect(cm.metadata.labels.grafana_dashboard).toBe("1");
      expect(JSON.parse(cm.data["red.json"])).toEqual(dashboard);
      const off = renderChart({ chartDir, set: { "dashboards.enabled": false } });
      expect(find(off, "ConfigMap", "shopmesh-dashboard-red")).toBeUndefined();
    } finally {
      rmSync(chartDir, { recursive: true, force: true });
    }
  });
});
