/** Sign in and sign up. Both end signed in: Register, then Login, then GetMe. */
import { identity } from "../api.js";
import { field, h, render } from "../dom.js";
import { session } from "../session.js";
import { errorBox, link, navigate, toast } from "../ui.js";

async function signIn(email: string, password: string) {
  const login = await identity.login({ email, password });
  // Not signed in yet, so the interceptor leaves this header alone.
  const me = await identity.getMe(
    {},
    { headers: { authorization: `Bearer ${login.accessToken}` } },
  );
  if (me.user === undefined) throw new Error("GetMe answered without a user");
  session.start(login, me.user);
  return me.user;
}

export function authPage(root: HTMLElement, mode: "signin" | "signup", notice?: string) {
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "email" });
  const password = h("input", {
    type: "password",
    name: "password",
    required: true,
    // identity.proto: Register requires at least 10 characters.
    minlength: mode === "signup" ? 10 : undefined,
    autocomplete: mode === "signup" ? "new-password" : "current-password",
  });
  const displayName = h("input", { type: "text", name: "displayName", autocomplete: "name" });
  const error = errorBox();
  const submit = h("button", { type: "submit" }, mode === "signup" ? "Create account" : "Sign in");
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        error.clear();
        submit.disabled = true;
        try {
          if (mode === "signup") {
            await identity.register({
              email: email.value,
              password: password.value,
              displayName: displayName.value,
            });
          }
          const user = await signIn(email.value, password.value);
          toast(`Signed in as ${user.email}.`);
          navigate("/");
        } catch (err) {
          error.show(err);
        } finally {
          submit.disabled = false;
        }
      },
    },
    field("Email", email),
    field("Password", password),
    mode === "signup" ? field("Name (optional)", displayName) : null,
    error,
    submit,
  );
  render(
    root,
    h("h1", {}, mode === "signup" ? "Create an account" : "Sign in"),
    notice ? h("p", { class: "notice", role: "status" }, notice) : null,
    form,
    mode === "signup"
      ? h("p", {}, "Already have an account? ", link("/signin", "Sign in"))
      : h("p", {}, "New here? ", link("/signup", "Create an account")),
  );
}
