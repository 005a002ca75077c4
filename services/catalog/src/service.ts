/**
 * `createCatalogService(deps)`: the catalog's gRPC handlers, as registrations for
 * the runtime's `createGrpcServer` — CatalogService (public browsing, admin
 * management) and InventoryService (internal stock reservation, see inventory.ts).
 */
import {
  type AdjustStockRequest,
  CatalogService,
  type CreateProductRequest,
  type ListProductsRequest,
  type UpdateProductRequest,
} from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import {
  authenticate,
  bearerToken,
  isAdmin,
  requireAdmin,
  type TokenVerifier,
} from "@shopmesh/runtime/auth.js";
import type { CallContext } from "@shopmesh/runtime/context.js";
import { pgErrorCode, UNIQUE_VIOLATION } from "@shopmesh/runtime/db.js";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "@shopmesh/runtime/errors.js";
import { type ServiceRegistration, serve } from "@shopmesh/runtime/grpc-server.js";
import { and, asc, eq, ilike, or, type SQL, sql } from "drizzle-orm";
import type { CatalogDb } from "./db/database.js";
import { products } from "./db/schema.js";
import { createInventoryService } from "./inventory.js";
import { type ListScope, pageTokens } from "./page-token.js";
import { noteStockChange, productToProto } from "./products.js";

export interface CatalogDeps {
  db: CatalogDb;
  /** Verifies admin tokens (identity's JWKS in production, test keys in tests). */
  verifier: TokenVerifier;
  /** StockLow is written when stock falls to or below this; undefined turns it off. */
  lowStockThreshold?: number;
}

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

/** Registrations of CatalogService and InventoryService, for createGrpcServer. */
export function createCatalogService(deps: CatalogDeps): ServiceRegistration[] {
  return [createCatalogRegistration(deps), createInventoryService(deps)];
}

function createCatalogRegistration(deps: CatalogDeps): ServiceRegistration {
  const { db, verifier } = deps;
  // The hottest query (every product page): its SQL is built once, not per call.
  const productById = db
    .select()
    .from(products)
    .where(eq(products.id, sql.placeholder("id")))
    .prepare("catalog_product_by_id");

  const admin = async (ctx: CallContext) => {
    const claims = await authenticate(ctx, verifier);
    requireAdmin(claims);
    return claims;
  };

  return serve(CatalogService, {
    async listProducts(req, ctx) {
      const scope: ListScope = {
        query: req.query.trim(),
        includeInactive: req.includeInactive && (await callerIsAdmin(ctx, verifier)),
      };
      return listProducts(db, req, scope);
    },

    async getProduct(req) {
      const [row] = await productById.execute({ id: req.productId });
      if (row === undefined) throw new NotFoundError(`product ${req.productId} not found`);
      return { product: productToProto(row) };
    },

    async createProduct(req, ctx) {
      await admin(ctx);
      return { product: productToProto(await createProduct(db, req)) };
    },

    async updateProduct(req, ctx) {
      await admin(ctx);
      return { product: productToProto(await updateProduct(db, req)) };
    },

    async adjustStock(req, ctx) {
      const claims = await admin(ctx);
      const row = await adjustStock(db, req, deps.lowStockThreshold);
      // No audit table yet: the log line is the audit trail of who changed stock and why.
      ctx.logger.info(
        {
          product_id: row.id,
          delta: req.delta,
          stock: row.stock,
          reason: req.reason,
          by: claims.sub,
        },
        "stock adjusted",
      );
      return { product: productToProto(row) };
    },
  });
}

/**
 * include_inactive is honoured for admins and ignored for everyone else (the
 * contract says so). An anonymous caller is fine; a token that is present but
 * invalid is still refused, rather than silently downgraded.
 */
async function callerIsAdmin(ctx: CallContext, verifier: TokenVerifier): Promise<boolean> {
  if (bearerToken(ctx.header("authorization")) === undefined) return false;
  return isAdmin(await authenticate(ctx, verifier));
}

/** `%`, `_` and `\` match literally in the user's query. */
function likePattern(query: string): string {
  return `%${query.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

async function listProducts(db: CatalogDb, req: ListProductsRequest, scope: ListScope) {
  const pageSize = Math.min(req.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  const where: SQL[] = [];
  if (!scope.includeInactive) where.push(eq(products.active, true));
  if (scope.query !== "") {
    const pattern = likePattern(scope.query);
    where.push(
      or(
        ilike(products.name, pattern),
        ilike(products.sku, pattern),
        ilike(products.description, pattern),
      ) as SQL,
    );
  }
  if (req.pageToken !== "") {
    const cursor = pageTokens.decode(req.pageToken, scope);
    // A row comparison matches ORDER BY name, id exactly (same collation), and the
    // (name, id) index serves both.
    where.push(sql`(${products.name}, ${products.id}) > (${cursor.name}, ${cursor.id}::uuid)`);
  }
  // One extra row tells whether another page exists without a count query.
  const rows = await db
    .select()
    .from(products)
    .where(and(...where))
    .orderBy(asc(products.name), asc(products.id))
    .limit(pageSize + 1);
  const page = rows.slice(0, pageSize);
  const last = page.at(-1);
  return {
    products: page.map(productToProto),
    nextPageToken:
      rows.length > pageSize && last !== undefined
        ? pageTokens.encode({ name: last.name, id: last.id }, scope)
        : "",
  };
}

async function createProduct(db: CatalogDb, req: CreateProductRequest) {
  // protovalidate has checked product, sku, name and price are present.
  const p = req.product;
  if (p === undefined || p.price === undefined)
    throw new InvalidArgumentError("product is required");
  try {
    const [row] = await db
      .insert(products)
      .values({
        sku: p.sku,
        name: p.name,
        description: p.description,
        priceAmount: p.price.amount,
        currencyCode: p.price.currencyCode,
        stock: p.stock,
        // proto3 cannot tell "unset" from false: a product is created inactive
        // (a draft) unless the admin says active = true.
        active: p.active,
      })
      .returning();
    if (row === undefined) throw new Error("insert returned no row");
    return row;
  } catch (err) {
    throw skuTaken(err, p.sku) ?? err;
  }
}

function skuTaken(err: unknown, sku: string): AlreadyExistsError | undefined {
  const pg = pgErrorCode(err);
  if (pg?.code === UNIQUE_VIOLATION && pg.constraint === "products_sku_unique") {
    return new AlreadyExistsError(`a product with sku ${sku} already exists`, { cause: err });
  }
  return undefined;
}

async function updateProduct(db: CatalogDb, req: UpdateProductRequest) {
  const p = req.product;
  if (p === undefined || req.updateMask === undefined) {
    throw new InvalidArgumentError("product and update_mask are required");
  }
  const set: Partial<typeof products.$inferInsert> = {};
  // protovalidate has limited the paths to these five; the default is a safety net.
  for (const path of req.updateMask.paths) {
    switch (path) {
      case "sku":
        set.sku = p.sku;
        break;
      case "name":
        set.name = p.name;
        break;
      case "description":
        set.description = p.description;
        break;
      case "price":
        if (p.price === undefined) throw new InvalidArgumentError("price cannot be cleared");
        set.priceAmount = p.price.amount;
        set.currencyCode = p.price.currencyCode;
        break;
      case "active":
        set.active = p.active;
        break;
      default:
        throw new InvalidArgumentError(`update_mask: path "${path}" cannot be updated`, [
          { field: "update_mask", rule: "update_mask.allowed_paths", message: `bad path ${path}` },
        ]);
    }
  }
  try {
    const [row] = await db
      .update(products)
      .set({ ...set, updatedAt: sql`now()` })
      .where(eq(products.id, p.id))
      .returning();
    if (row === undefined) throw new NotFoundError(`product ${p.id} not found`);
    return row;
  } catch (err) {
    throw skuTaken(err, p.sku) ?? err;
  }
}

async function adjustStock(db: CatalogDb, req: AdjustStockRequest, lowStockThreshold?: number) {
  return db.transaction(async (tx) => {
    // One conditional UPDATE: the row lock it takes makes read-check-write atomic, so
    // concurrent adjustments and reservations cannot interleave. bigint arithmetic so
    // an absurd delta fails the check instead of overflowing int4.
    const [row] = await tx
      .update(products)
      .set({ stock: sql`${products.stock} + ${req.delta}`, updatedAt: sql`now()` })
      .where(
        and(
          eq(products.id, req.productId),
          sql`${products.stock}::bigint + ${req.delta} between 0 and 2147483647`,
        ),
      )
      .returning();
    if (row === undefined) {
      const [current] = await tx.select().from(products).where(eq(products.id, req.productId));
      if (current === undefined) throw new NotFoundError(`product ${req.productId} not found`);
      const what = req.delta < 0 ? "go below 0" : "exceed 2147483647";
      throw new FailedPreconditionError(
        `stock of ${current.sku} (${current.id}) cannot ${what}: stock ${current.stock}, delta ${req.delta}`,
      );
    }
    await noteStockChange(tx, row, row.stock - req.delta, lowStockThreshold);
    return row;
  });
}
