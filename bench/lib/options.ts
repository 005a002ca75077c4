/**
 * Options of the benchmark scripts: `--name=value` flags first, then environment
 * variables (`BENCH_NAME` for bench, `LOAD_NAME` for load), then the default.
 */

export function createOptions(envPrefix: string) {
  const raw = (name: string): string | undefined => {
    const flag = process.argv.find((a) => a.startsWith(`--${name}=`));
    if (flag !== undefined) return flag.slice(name.length + 3);
    const v = process.env[`${envPrefix}_${name.toUpperCase().replaceAll("-", "_")}`];
    return v === undefined || v === "" ? undefined : v;
  };
  const num = (name: string, fallback: number, min = 0): number => {
    const v = raw(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) {
      process.stderr.write(
        `${envPrefix}_${name.toUpperCase().replaceAll("-", "_")}: "${v}" is not a number >= ${min}\n`,
      );
      process.exit(2);
    }
    return n;
  };
  return { raw, num, str: (name: string, fallback: string) => raw(name) ?? fallback };
}
