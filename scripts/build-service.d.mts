/** Types of build-service.mjs, for the tests that import it. */
export function deployableServices(): string[];
export function buildService(
  service: string,
  options?: { outdir?: string; quiet?: boolean },
): Promise<string>;
