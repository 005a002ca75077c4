/**
 * The shopmesh calls the benchmarks set themselves up with, over the edge's REST
 * surface: register and log users in, log the admin in, create (or find) a product
 * with enough stock for the run.
 */
import { type HttpClient, HttpError } from "./http.js";

export interface BenchUser {
  email: string;
  password: string;
  token: string;
  userId: string;
}

interface LoginJson {
  accessToken: string;
  user: { id: string };
}

interface ProductJson {
  id: string;
  sku: string;
  stock: number;
}

export async function login(http: HttpClient, email: string, password: string): Promise<LoginJson> {
  return http.json<LoginJson>("POST", "/v1/auth/login", { email, password });
}

/** Registers `count` users (a few at a time: identity hashes with argon2id) and logs each in. */
export async function createUsers(
  http: HttpClient,
  count: number,
  tag: string,
  parallel = 4,
): Promise<BenchUser[]> {
  const users: BenchUser[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const email = `${tag}-${i}@example.com`;
      const password = `pw-${tag}-${i}-long-enough`;
      await http.json("POST", "/v1/users", { email, password });
      const l = await login(http, email, password);
      users.push({ email, password, token: l.accessToken, userId: l.user.id });
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
  return users;
}

/** The product with `sku`, created by the admin with `stock` units if it does not exist. */
export async function ensureProduct(
  http: HttpClient,
  adminToken: string,
  p: { sku: string; name: string; priceCents: number; stock: number },
): Promise<ProductJson> {
  const auth = { authorization: `Bearer ${adminToken}` };
  try {
    return await http.json<ProductJson>(
      "POST",
      "/v1/products",
      {
        sku: p.sku,
        name: p.name,
        description: `${p.name}, created by the benchmark`,
        price: { currencyCode: "USD", amount: String(p.priceCents) },
        stock: p.stock,
        active: true,
      },
      auth,
    );
  } catch (err) {
    if (!(err instanceof HttpError && err.status === 409)) throw err;
    const list = await http.json<{ products: ProductJson[] }>(
      "GET",
      `/v1/products?query=${encodeURIComponent(p.sku)}&page_size=10`,
      undefined,
      auth,
    );
    const found = list.products.find((x) => x.sku === p.sku);
    if (found === undefined) throw err;
    return found;
  }
}

/**
 * What every saga benchmark starts with: the admin's token, a product with plenty of
 * stock (created once per database) and `users` customers logged in.
 */
export async function sagaFixture(
  http: HttpClient,
  admin: { email: string; password: string },
  users: number,
  tag: string,
): Promise<{ product: ProductJson; users: BenchUser[] }> {
  const { accessToken } = await login(http, admin.email, admin.password);
  const product = await ensureProduct(http, accessToken, {
    sku: "BENCH-STICKER-PACK",
    name: "Sticker Pack (benchmark)",
    priceCents: 499,
    stock: 1_000_000,
  });
  return { product, users: await createUsers(http, users, `${tag}-${Date.now().toString(36)}`) };
}
