/**
 * For tests: a strict parser of the Prometheus text exposition format (0.0.4) and
 * `scrapeMetrics(url)`, which fetches a /metrics endpoint, checks its content type
 * and parses it. A malformed exposition throws, naming the line.
 */

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  /** The series name as written (`x_bucket`, `x_sum`, ...). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: MetricType;
  help: string | undefined;
  samples: Sample[];
}

export interface Exposition {
  families: Map<string, MetricFamily>;
  /** The sum of every sample named `name` whose labels include `labels`. */
  sum(name: string, labels?: Record<string, string>): number;
  /** Samples named `name` whose labels include `labels`. */
  find(name: string, labels?: Record<string, string>): Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

export class ExpositionError extends Error {
  override name = "ExpositionError";
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
  }
}

/** Parses and checks `text`; throws ExpositionError at the first violation. */
export function parsePrometheusText(text: string): Exposition {
  if (text.length > 0 && !text.endsWith("\n")) throw new ExpositionError(0, "no final newline");
  const families = new Map<string, MetricFamily>();
  const closed = new Set<string>();
  const seen = new Set<string>();
  const typed = new Set<string>();
  let current: MetricFamily | undefined;
  const lines = text.split("\n");
  lines.pop();

  const family = (name: string, line: number): MetricFamily => {
    let f = families.get(name);
    if (f === undefined) {
      if (closed.has(name)) throw new ExpositionError(line, `${name}: samples not contiguous`);
      f = { name, type: "untyped", help: undefined, samples: [] };
      families.set(name, f);
    }
    if (current !== undefined && current !== f) {
      closed.add(current.name);
      if (closed.has(name)) throw new ExpositionError(line, `${name}: samples not contiguous`);
    }
    current = f;
    return f;
  };

  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === "") return;
    if (raw.startsWith("#")) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(raw);
      if (m === null) return; // a plain comment
      const [, kind, name = "", rest = ""] = m;
      if (!NAME.test(name)) throw new ExpositionError(line, `bad metric name "${name}"`);
      const f = family(name, line);
      if (kind === "TYPE") {
        if (!TYPES.has(rest)) throw new ExpositionError(line, `${name}: bad type "${rest}"`);
        if (f.samples.length > 0) throw new ExpositionError(line, `${name}: TYPE after samples`);
        if (typed.has(name)) throw new ExpositionError(line, `${name}: second TYPE`);
        typed.add(name);
        f.type = rest as MetricType;
      } else {
        if (f.help !== undefined) throw new ExpositionError(line, `${name}: second HELP`);
        f.help = rest;
      }
      return;
    }
    const sample = parseSample(raw, line);
    const f = family(familyOf(sample.name, families), line);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) throw new ExpositionError(line, `duplicate series ${raw}`);
    seen.add(key);
    if (f.type === "counter" && (sample.value < 0 || Number.isNaN(sample.value))) {
      throw new ExpositionError(line, `${sample.name}: counter is ${sample.value}`);
    }
    f.samples.push(sample);
  });

  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);

  const matches = (s: Sample, labels: Record<string, string>) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  const find = (name: string, labels: Record<string, string> = {}) =>
    [...families.values()].flatMap((f) =>
      f.samples.filter((s) => s.name === name && matches(s, labels)),
    );
  return {
    families,
    find,
    sum: (name, labels) => find(name, labels).reduce((a, s) => a + s.value, 0),
  };
}

/** The family a sample belongs to: `x` for `x_bucket`/`x_sum`/`x_count` of a histogram or summary. */
function familyOf(name: string, families: Map<string, MetricFamily>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const f = families.get(base);
    if (f && (f.type === "histogram" || (f.type === "summary" && suffix !== "_bucket"))) {
      return base;
    }
  }
  return name;
}

function parseSample(raw: string, line: number): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(raw);
  if (m === null) throw new ExpositionError(line, `bad sample "${raw}"`);
  const name = m[1] as string;
  let i = name.length;
  const labels: Record<string, string> = {};
  if (raw[i] === "{") {
    i++;
    while (raw[i] !== "}") {
      const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(raw.slice(i));
      if (l === null) throw new ExpositionError(line, `bad label in "${raw}"`);
      const label = l[1] as string;
      if (!LABEL.test(label) || label.startsWith("__")) {
        throw new ExpositionError(line, `bad label name "${label}"`);
      }
      if (label in labels) throw new ExpositionError(line, `label ${label} twice`);
      i += l[0].length;
      let value = "";
      for (;;) {
        const c = raw[i];
        if (c === undefined)
          throw new ExpositionError(line, `unterminated label value in "${raw}"`);
        i++;
        if (c === '"') break;
        if (c === "\\") {
          const e = raw[i++];
          if (e === "n") value += "\n";
          else if (e === "\\" || e === '"') value += e;
          else throw new ExpositionError(line, `bad escape \\${e} in "${raw}"`);
        } else value += c;
      }
      labels[label] = value;
      if (raw[i] === ",") i++;
      else if (raw[i] !== "}") throw new ExpositionError(line, `expected , or } in "${raw}"`);
    }
    i++;
  }
  const rest = raw.slice(i);
  const v = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
  if (v === null) throw new ExpositionError(line, `bad value part "${rest}" in "${raw}"`);
  const value = parseValue(v[1] as string);
  if (value === undefined) throw new ExpositionError(line, `bad value "${v[1]}"`);
  return { name, labels, value };
}

/** A float as Prometheus reads it (Go's ParseFloat: NaN and Inf in any case; prom-client writes "Nan"). */
function parseValue(text: string): number | undefined {
  const special = /^([-+]?)(inf|infinity|nan)$/i.exec(text);
  if (special) {
    if (special[2]?.toLowerCase() === "nan") return Number.NaN;
    return special[1] === "-" ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

/** Buckets cumulative and ending at +Inf = _count, one _sum and _count per series. */
function checkHistogram(f: MetricFamily) {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let h = series.get(key);
    if (h === undefined) {
      h = { buckets: [] };
      series.set(key, h);
    }
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new ExpositionError(0, `${f.name}_bucket without le`);
      const bound = parseValue(le);
      if (bound === undefined) throw new ExpositionError(0, `${f.name}: bad le "${le}"`);
      h.buckets.push([bound, s.value]);
    } else if (s.name === `${f.name}_sum`) h.sum = s.value;
    else if (s.name === `${f.name}_count`) h.count = s.value;
    else throw new ExpositionError(0, `${f.name}: unexpected series ${s.name}`);
  }
  for (const [key, h] of series) {
    const sorted = [...h.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      if ((sorted[i]?.[1] ?? 0) < (sorted[i - 1]?.[1] ?? 0)) {
        throw new ExpositionError(0, `${f.name}${key}: buckets not cumulative`);
      }
    }
    const inf = sorted.at(-1);
    if (inf === undefined || inf[0] !== Number.POSITIVE_INFINITY) {
      throw new ExpositionError(0, `${f.name}${key}: no +Inf bucket`);
    }
    if (h.count === undefined || h.sum === undefined) {
      throw new ExpositionError(0, `${f.name}${key}: _sum or _count missing`);
    }
    if (inf[1] !== h.count) throw new ExpositionError(0, `${f.name}${key}: +Inf bucket != _count`);
  }
}

/**
 * GETs `url` (an admin server's /metrics), checks the status and the Prometheus text
 * content type, and parses the body strictly.
 */
export async function scrapeMetrics(url: string): Promise<Exposition> {
  const res = await fetch(url);
  const body = await res.text();
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}: ${body.slice(0, 200)}`);
  const type = res.headers.get("content-type") ?? "";
  if (!/^text\/plain;\s*version=0\.0\.4/.test(type)) {
    throw new Error(`${url}: content-type "${type}" is not the Prometheus text format`);
  }
  return parsePrometheusText(body);
}
