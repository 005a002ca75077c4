/**
 * The signed-in person: access and refresh tokens kept in memory only (a reload signs
 * out; nothing readable by other scripts lands in storage). The access token is
 * renewed through IdentityService/Refresh shortly before it expires, or when the
 * server refused it; one refresh at a time, since refresh tokens rotate.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { IdentityService, Role, type User } from "@shopmesh/gen/shop/identity/v1/identity_pb.js";

/** Renew this long before the access token expires. */
const EARLY_MS = 30_000;

interface Tokens {
  accessToken: string;
  refreshToken: string;
  /** Epoch ms. */
  expiresAt: number;
}

interface TokenResponse {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

/** The refresh token was refused (expired, revoked or reused): sign in again. */
export class SessionExpired extends Error {
  constructor() {
    super("Your session expired. Please sign in again.");
  }
}

const refresher = createClient(
  IdentityService,
  createConnectTransport({ baseUrl: location.origin }),
);

let tokens: Tokens | undefined;
let user: User | undefined;
let refreshing: Promise<string> | undefined;
const listeners = new Set<(why: "changed" | "expired") => void>();

function emit(why: "changed" | "expired") {
  for (const l of listeners) l(why);
}

export const session = {
  signedIn: () => tokens !== undefined,
  user: () => user,
  isAdmin: () => user?.roles.includes(Role.ADMIN) ?? false,

  /** Stores the tokens of Login (or Refresh) and who they belong to. */
  start(t: TokenResponse, who: User) {
    tokens = toTokens(t);
    user = who;
    emit("changed");
  },

  signOut() {
    tokens = undefined;
    user = undefined;
    emit("changed");
  },

  /** A valid access token, renewed first when it is about to expire (or `force`). */
  async accessToken(force = false): Promise<string> {
    const t = tokens;
    if (t === undefined) throw new SessionExpired();
    if (!force && t.expiresAt - Date.now() > EARLY_MS) return t.accessToken;
    refreshing ??= (async () => {
      try {
        const res = await refresher.refresh({ refreshToken: t.refreshToken });
        tokens = toTokens(res);
        return res.accessToken;
      } catch {
        tokens = undefined;
        user = undefined;
        emit("expired");
        throw new SessionExpired();
      } finally {
        refreshing = undefined;
      }
    })();
    return refreshing;
  },

  onChange(l: (why: "changed" | "expired") => void) {
    listeners.add(l);
  },
};

function toTokens(t: TokenResponse): Tokens {
  return {
    accessToken: t.accessToken,
    refreshToken: t.refreshToken,
    expiresAt: Date.now() + t.expiresIn * 1000,
  };
}
