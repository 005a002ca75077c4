/**
 * A Prometheus histogram for hot paths (every RPC, every outbox row), registered in a
 * prom-client registry like any other metric. A prom-client histogram child still
 * builds a label object and a label-hash string on every observation; here a series
 * is a plain object bound once (`series(...labelValues)`), and `observe` only adds to
 * numbers: no allocation per call. `countOf` exposes the series' counts as a counter
 * (`…_total`), so a rate and a latency come from one observation.
 */
import type { Registry } from "prom-client";

/** One label combination of a FastHistogram. */
export interface Series {
  observe(value: number): void;
}

interface SeriesState extends Series {
  labels: Record<string, string>;
  /** Per bucket (not cumulative); the last slot is above the largest bound. */
  counts: Float64Array;
  sum: number;
  count: number;
}

interface Sample {
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string>;
  value: number;
  metricName?: string;
}

export interface FastHistogram {
  readonly name: string;
  readonly labelNames: readonly string[];
  /** The series for these label values (created at the first call, then reused). */
  series(...values: string[]): Series;
}

/** A histogram registered in `registry`; label values must come from bounded sets. */
export function createFastHistogram(
  registry: Registry,
  options: { name: string; help: string; labelNames: readonly string[]; buckets: number[] },
): FastHistogram & { all(): Iterable<SeriesState> } {
  const bounds = [...options.buckets].sort((a, b) => a - b);
  const { name, labelNames } = options;
  const all = new Map<string, SeriesState>();

  const create = (values: string[]): SeriesState => {
    if (values.length !== labelNames.length) {
      throw new Error(`${name}: expected labels ${labelNames.join(", ")}, got ${values.length}`);
    }
    const labels: Record<string, string> = {};
    labelNames.forEach((l, i) => {
      labels[l] = values[i] as string;
    });
    const counts = new Float64Array(bounds.length + 1);
    const s: SeriesState = {
      labels,
      counts,
      sum: 0,
      count: 0,
      observe(value) {
        let i = 0;
        while (i < bounds.length && value > (bounds[i] as number)) i++;
        counts[i] = (counts[i] as number) + 1;
        s.sum += value;
        s.count++;
      },
    };
    return s;
  };

  const metric = {
    name,
    help: options.help,
    type: "histogram",
    aggregator: "sum",
    labelNames,
    get() {
      const values: Sample[] = [];
      for (const s of all.values()) {
        let cumulative = 0;
        bounds.forEach((le, i) => {
          cumulative += s.counts[i] as number;
          values.push({
            labels: { le },
            sharedLabels: s.labels,
            value: cumulative,
            metricName: `${name}_bucket`,
          });
        });
        values.push({
          labels: { le: "+Inf" },
          sharedLabels: s.labels,
          value: s.count,
          metricName: `${name}_bucket`,
        });
        values.push({ labels: s.labels, value: s.sum, metricName: `${name}_sum` });
        values.push({ labels: s.labels, value: s.count, metricName: `${name}_count` });
      }
      return { name, help: options.help, type: "histogram", values, aggregator: "sum" };
    },
  };
  registry.registerMetric(metric as never);

  return {
    name,
    labelNames,
    series(...values) {
      const key = values.join("\u0000");
      let s = all.get(key);
      if (s === undefined) {
        s = create(values);
        all.set(key, s);
      }
      return s;
    },
    all: () => all.values(),
  };
}

/** The observation counts of `histogram` as a counter named `name` (ending in _total). */
export function countOf(
  registry: Registry,
  histogram: ReturnType<typeof createFastHistogram>,
  options: { name: string; help: string },
): void {
  const metric = {
    name: options.name,
    help: options.help,
    type: "counter",
    aggregator: "sum",
    labelNames: histogram.labelNames,
    get() {
      const values: Sample[] = [];
      for (const s of histogram.all()) values.push({ labels: s.labels, value: s.count });
      return { name: options.name, help: options.help, type: "counter", values, aggregator: "sum" };
    },
  };
  registry.registerMetric(metric as never);
}
