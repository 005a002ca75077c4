/**
 * The storefront's built assets (web/dist) at `/`: files with their content type,
 * hashed `/assets/*` cached for a year (immutable), everything else revalidated
 * (ETag, 304), gzip when the client takes it, and index.html for page routes (GET
 * of an extension-less path that accepts HTML), so the SPA's history routing works on
 * reload. It never answers the API: /v1/*, RPC paths (/pkg.Service/Method), /docs,
 * /openapi.json, /healthz, /readyz and /.well-known/* stay the edge's. When the folder
 * has no index.html (assets not built), nothing is served and the edge answers 404.
 */
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** web/dist from the edge's source (services/edge/src) or bundle (services/edge/dist). */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL("../../../web/dist/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
  ".webmanifest": "application/manifest+json",
};
const COMPRESSIBLE = new Set([".html", ".js", ".mjs", ".css", ".json", ".map", ".svg", ".txt"]);

/** The page loads only its own scripts and styles and talks only to its own origin. */
const CSP = [
  "default-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** Paths that belong to the API, never to the storefront. */
const RESERVED = [
  /^\/v1(\/|$)/,
  /^\/\.well-known\//,
  /^\/(docs|openapi\.json|healthz|readyz)$/,
  /^\/[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+\//,
];

interface Cached {
  mtimeMs: number;
  body: Buffer;
  gzip: Buffer | undefined;
  etag: string;
  type: string;
}

export interface StaticSite {
  /** Serves GET/HEAD of a storefront path; false when the path is not the storefront's. */
  serve(req: Req, res: Res, pathname: string): Promise<boolean>;
}

export function createStaticSite(root: string = DEFAULT_WEB_DIR): StaticSite {
  const base = normalize(root.endsWith(sep) ? root : root + sep);
  const cache = new Map<string, Cached>();

  /** The file's bytes, re-read when its mtime changes (a rebuild while running). */
  const load = async (file: string): Promise<Cached | undefined> => {
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(file);
    } catch {
      return undefined;
    }
    if (!st.isFile()) return undefined;
    const hit = cache.get(file);
    if (hit !== undefined && hit.mtimeMs === st.mtimeMs) return hit;
    const body = await readFile(file);
    const ext = extname(file);
    const entry: Cached = {
      mtimeMs: st.mtimeMs,
      body,
      gzip: COMPRESSIBLE.has(ext) && body.length > 1024 ? gzipSync(body) : undefined,
      etag: `"${createHash("sha1").update(body).digest("base64url").slice(0, 20)}"`,
      type: TYPES[ext] ?? "application/octet-stream",
    };
    cache.set(file, entry);
    return entry;
  };

  return {
    async serve(req, res, pathname) {
      if (RESERVED.some((r) => r.test(pathname))) return false;
      let decoded: string;
      try {
        decoded = decodeURIComponent(pathname);
      } catch {
        return false;
      }
      if (decoded.includes("\0")) return false;
      const file = normalize(join(base, decoded));
      // Only files inside the folder; "/" and page routes are index.html.
      let entry =
        file.startsWith(base) && file !== base && !decoded.endsWith("/")
          ? await load(file)
          : undefined;
      const immutable = entry !== undefined && decoded.startsWith("/assets/");
      if (entry === undefined) {
        const isPage = extname(decoded) === "" && acceptsHtml(req);
        if (!isPage) return false;
        entry = await load(join(base, "index.html"));
        if (entry === undefined) return false;
      }
      send(req, res, entry, immutable);
      return true;
    },
  };
}

function acceptsHtml(req: Req): boolean {
  const accept = req.headers["accept"];
  return accept === undefined || accept.includes("text/html") || accept.includes("*/*");
}

function send(req: Req, res: Res, entry: Cached, immutable: boolean) {
  res.setHeader("content-type", entry.type);
  res.setHeader("cache-control", immutable ? "public, max-age=31536000, immutable" : "no-cache");
  res.setHeader("etag", entry.etag);
  res.setHeader("x-content-type-options", "nosniff");
  if (entry.type.startsWith("text/html")) {
    res.setHeader("content-security-policy", CSP);
    res.setHeader("referrer-policy", "no-referrer");
    res.setHeader("x-frame-options", "DENY");
  }
  if (entry.gzip !== undefined) {
    const vary = res.getHeader("vary");
    res.setHeader("vary", vary ? `${String(vary)}, accept-encoding` : "accept-encoding");
  }
  if (req.headers["if-none-match"] === entry.etag) {
    res.statusCode = 304;
    res.end();
    return;
  }
  const gzip = entry.gzip !== undefined && /\bgzip\b/.test(String(req.headers["accept-encoding"]));
  const body = gzip ? (entry.gzip as Buffer) : entry.body;
  if (gzip) res.setHeader("content-encoding", "gzip");
  res.setHeader("content-length", body.length);
  res.statusCode = 200;
  if (req.method === "HEAD") res.end();
  else res.end(body);
}
