/**
 * Prints where the time went in `.cpuprofile` files (see lib/profile.ts):
 *
 *   node --import tsx bench/profile-summary.ts <file-or-folder>... [--top=15] [--under=NAME]
 *
 * --under=NAME adds who calls into the frames named like NAME: e.g. --under=sqlToQuery
 * says which statements make drizzle build SQL, --under=writeBuffer which socket writes.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { summarizeProfile } from "./lib/profile.js";

const args = process.argv.slice(2);
const top = Number(args.find((a) => a.startsWith("--top="))?.slice(6) ?? 15);
const under = args.find((a) => a.startsWith("--under="))?.slice(8);
const files = args
  .filter((a) => !a.startsWith("--"))
  .flatMap((a) =>
    statSync(a).isDirectory()
      ? readdirSync(a)
          .filter((f) => f.endsWith(".cpuprofile"))
          .map((f) => join(a, f))
      : [a],
  );
if (files.length === 0) {
  process.stderr.write("usage: profile-summary.ts <file.cpuprofile | folder>... [--top=N]\n");
  process.exit(2);
}
for (const file of files) {
  const s = summarizeProfile(file, top, undefined, under);
  console.log(`\n== ${file}: ${s.busyMs} ms busy of ${s.wallMs} ms`);
  console.log("-- by origin (self)");
  for (const x of s.byOrigin) console.log(`${x.pct.toFixed(1).padStart(6)}%  ${x.name}`);
  console.log("-- functions (self)");
  for (const x of s.selfTop) console.log(`${x.pct.toFixed(1).padStart(6)}%  ${x.name}`);
  console.log("-- functions (inclusive)");
  for (const x of s.inclusiveTop) console.log(`${x.pct.toFixed(1).padStart(6)}%  ${x.name}`);
  if (s.callersOfUnder !== undefined) {
    console.log(`-- under ${under}, by caller`);
    for (const x of s.callersOfUnder) console.log(`${x.pct.toFixed(1).padStart(6)}%  ${x.name}`);
  }
}
