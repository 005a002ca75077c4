/**
 * The /docs page: one self-contained HTML document (inline CSS and script, nothing
 * from a CDN — clusters and dev machines may have no internet) that fetches the
 * OpenAPI document and renders its operations grouped by tag, with a small "try it"
 * form per operation.
 *
 * Exports `docsHtml`. The script builds the DOM with createElement/textContent only,
 * so text from the document is never interpreted as HTML.
 */

/** Escapes a string for a double-quoted HTML attribute or text node. */
function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON for embedding inside <script>: "<" escaped so "</script>" cannot end the element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/\u2028|\u2029/g, (c) => {
      return c === "\u2028" ? "\\u2028" : "\\u2029";
    });
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg2: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9da7b3; --line: #30363d; --bg2: #161b22; } }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); max-width: 980px; margin: 0 auto; padding: 1rem 1.25rem 4rem; }
h1 { margin-bottom: 0; } h2 { border-bottom: 1px solid var(--line); padding-bottom: .3rem; margin-top: 2.2rem; }
.muted { color: var(--muted); }
details.op { border: 1px solid var(--line); border-radius: 6px; margin: .5rem 0; }
details.op > summary { cursor: pointer; padding: .45rem .7rem; display: flex; gap: .7rem; align-items: baseline; flex-wrap: wrap; }
details.op[open] > summary { border-bottom: 1px solid var(--line); background: var(--bg2); }
.body { padding: .3rem .9rem .9rem; }
.verb { font: 600 12px/1.9 ui-monospace, monospace; min-width: 4.2rem; text-align: center; border-radius: 4px; color: #fff; }
.GET { background: #1f6feb; } .POST { background: #1a7f37; } .PUT { background: #9a6700; } .PATCH { background: #8250df; } .DELETE { background: #cf222e; }
code, pre, .path { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
pre { background: var(--bg2); padding: .6rem; border-radius: 6px; overflow: auto; max-height: 28rem; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0; } th, td { text-align: left; border-bottom: 1px solid var(--line); padding: .25rem .4rem; vertical-align: top; }
.lock { font-size: 12px; color: var(--muted); }
form.try { display: grid; gap: .4rem; margin-top: .6rem; } form.try label { display: grid; grid-template-columns: 12rem 1fr; gap: .5rem; align-items: center; }
input, textarea, button { font: inherit; } textarea { font-family: ui-monospace, monospace; min-height: 7rem; }
#token { width: 100%; box-sizing: border-box; }
`;

// Plain ES2017 in the page: it runs in any current browser without a build step.
const SCRIPT = `
(function () {
  "use strict";
  var specUrl = JSON.parse(document.getElementById("spec-url").textContent);
  var root = document.getElementById("ops");
  var tokenInput = document.getElementById("token");
  try { tokenInput.value = sessionStorage.getItem("shopmesh-token") || ""; } catch (e) {}
  tokenInput.addEventListener("change", function () {
    try { sessionStorage.setItem("shopmesh-token", tokenInput.value.trim()); } catch (e) {}
  });

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      if (c == null) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function refName(schema) {
    return schema && schema.$ref ? schema.$ref.replace("#/components/schemas/", "") : null;
  }
  function typeLabel(schema) {
    if (!schema) return "";
    var r = refName(schema);
    if (r) return r;
    if (schema.type === "array") return typeLabel(schema.items) + "[]";
    var t = Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type || "any");
    return schema.format ? t + " (" + schema.format + ")" : t;
  }
  function example(spec, schema, depth) {
    if (!schema || depth > 4) return null;
    var r = refName(schema);
    if (r) return example(spec, spec.components.schemas[r], depth + 1);
    if (schema.enum) return schema.enum[0];
    var t = Array.isArray(schema.type) ? schema.type[0] : schema.type;
    if (t === "object") {
      var out = {};
      Object.keys(schema.properties || {}).forEach(function (k) {
        out[k] = example(spec, schema.properties[k], depth + 1);
      });
      return out;
    }
    if (t === "array") return [];
    if (t === "integer" || t === "number") return 0;
    if (t === "boolean") return false;
    if (t === "string" && (schema.format === "int64" || schema.format === "uint64")) return "0";
    if (t === "string") return schema.format === "date-time" ? new Date().toISOString() : "";
    return null;
  }
  // Markdown-ish: only \`code\` spans are rendered, the rest stays text.
  function prose(text) {
    return text.split("\`").map(function (part, i) { return i % 2 ? el("code", {}, [part]) : part; });
  }
  function schemaBlock(spec, schema) {
    var r = refName(schema);
    var target = r ? spec.components.schemas[r] : schema;
    var wrap = el("div", {}, [el("div", {}, [el("code", {}, [typeLabel(schema)])])]);
    if (target && target.properties) {
      var rows = Object.keys(target.properties).map(function (k) {
        var p = target.properties[k];
        return el("tr", {}, [el("td", {}, [el("code", {}, [k])]), el("td", {}, [typeLabel(p)]), el("td", {}, prose(p.description || ""))]);
      });
      wrap.appendChild(el("table", {}, [el("tr", {}, [el("th", {}, ["field"]), el("th", {}, ["type"]), el("th", {}, [""])])].concat(rows)));
    }
    return wrap;
  }

  function tryForm(spec, path, verb, op) {
    var form = el("form", { class: "try" }, []);
    var inputs = [];
    (op.parameters || []).forEach(function (p) {
      var input = el("input", { name: p.name, placeholder: p.in + (p.required ? ", required" : "") }, []);
      inputs.push({ p: p, input: input });
      form.appendChild(el("label", {}, [el("code", {}, [p.name]), input]));
    });
    var body = null;
    if (op.requestBody) {
      var schema = op.requestBody.content["application/json"].schema;
      body = el("textarea", { name: "body" }, []);
      body.value = JSON.stringify(example(spec, schema, 0), null, 2);
      form.appendChild(el("label", {}, [el("span", {}, ["JSON body"]), body]));
    }
    var out = el("pre", { hidden: "" }, []);
    form.appendChild(el("div", {}, [el("button", { type: "submit" }, ["Send " + verb.toUpperCase()])]));
    form.appendChild(out);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var url = path;
      var query = new URLSearchParams();
      inputs.forEach(function (i) {
        var v = i.input.value;
        if (i.p.in === "path") url = url.replace("{" + i.p.name + "}", encodeURIComponent(v));
        else if (v !== "" && i.p.schema && i.p.schema.type === "array") v.split(",").forEach(function (x) { query.append(i.p.name, x.trim()); });
        else if (v !== "") query.append(i.p.name, v);
      });
      var qs = query.toString();
      var headers = { accept: "application/json" };
      var token = tokenInput.value.trim();
      if (token) headers.authorization = "Bearer " + token;
      var init = { method: verb.toUpperCase(), headers: headers };
      if (body && body.value.trim() !== "") { headers["content-type"] = "application/json"; init.body = body.value; }
      var base = (spec.servers && spec.servers[0] && spec.servers[0].url || "/").replace(/\\/$/, "");
      out.hidden = false;
      out.textContent = "…";
      fetch(base + url + (qs ? "?" + qs : ""), init).then(function (res) {
        return res.text().then(function (text) {
          var shown = text;
          try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) {}
          out.textContent = res.status + " " + res.statusText + "\\n\\n" + shown;
        });
      }).catch(function (e) { out.textContent = String(e); });
    });
    return form;
  }

  function render(spec) {
    document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
    var groups = {};
    var order = (spec.tags || []).map(function (t) { return t.name; });
    Object.keys(spec.paths).forEach(function (path) {
      Object.keys(spec.paths[path]).forEach(function (verb) {
        var op = spec.paths[path][verb];
        (op.tags && op.tags.length ? op.tags : ["default"]).forEach(function (tag) {
          if (!groups[tag]) { groups[tag] = []; if (order.indexOf(tag) < 0) order.push(tag); }
          groups[tag].push({ path: path, verb: verb, op: op });
        });
      });
    });
    var toc = el("p", {}, []);
    order.forEach(function (tag, i) {
      if (!groups[tag]) return;
      if (i) toc.appendChild(document.createTextNode(" · "));
      toc.appendChild(el("a", { href: "#tag-" + tag }, [tag]));
    });
    root.appendChild(toc);
    order.forEach(function (tag) {
      if (!groups[tag]) return;
      var info = (spec.tags || []).filter(function (t) { return t.name === tag; })[0];
      root.appendChild(el("h2", { id: "tag-" + tag }, [tag]));
      if (info && info.description) root.appendChild(el("p", { class: "muted" }, [info.description]));
      groups[tag].forEach(function (e) {
        var op = e.op;
        var secured = op.security ? op.security.length > 0 : !!(spec.security && spec.security.length);
        var head = el("summary", {}, [
          el("span", { class: "verb " + e.verb.toUpperCase() }, [e.verb.toUpperCase()]),
          el("span", { class: "path" }, [e.path]),
          el("span", { class: "muted" }, [op.summary || ""]),
          secured ? el("span", { class: "lock", title: "requires a bearer token" }, ["requires token"]) : null,
        ]);
        var inner = el("div", { class: "body" }, []);
        (op.description || "").split("\\n\\n").forEach(function (para) { inner.appendChild(el("p", {}, prose(para))); });
        if (op.parameters && op.parameters.length) {
          inner.appendChild(el("h4", {}, ["Parameters"]));
          var rows = op.parameters.map(function (p) {
            return el("tr", {}, [el("td", {}, [el("code", {}, [p.name])]), el("td", {}, [p.in]), el("td", {}, [typeLabel(p.schema)]), el("td", {}, [p.required ? "required" : ""]), el("td", {}, prose(p.description || ""))]);
          });
          inner.appendChild(el("table", {}, [el("tr", {}, ["name", "in", "type", "", "description"].map(function (h) { return el("th", {}, [h]); }))].concat(rows)));
        }
        if (op.requestBody) {
          inner.appendChild(el("h4", {}, ["Request body"]));
          inner.appendChild(schemaBlock(spec, op.requestBody.content["application/json"].schema));
        }
        var ok = op.responses && op.responses["200"];
        if (ok && ok.content) {
          inner.appendChild(el("h4", {}, ["Response 200"]));
          inner.appendChild(schemaBlock(spec, ok.content["application/json"].schema));
        }
        inner.appendChild(el("h4", {}, ["Try it"]));
        inner.appendChild(tryForm(spec, e.path, e.verb, op));
        root.appendChild(el("details", { class: "op", id: op.operationId || "" }, [head, inner]));
      });
    });
    root.appendChild(el("h2", { id: "schemas" }, ["Schemas"]));
    Object.keys(spec.components && spec.components.schemas || {}).forEach(function (name) {
      var s = spec.components.schemas[name];
      var d = el("details", { class: "op", id: "schema-" + name }, [el("summary", {}, [el("code", {}, [name])])]);
      var inner = el("div", { class: "body" }, [s.description ? el("p", {}, [s.description]) : null]);
      if (s.enum) inner.appendChild(el("p", {}, ["One of: ", el("code", {}, [s.enum.join(", ")])]));
      inner.appendChild(schemaBlock(spec, s));
      d.appendChild(inner);
      root.appendChild(d);
    });
  }

  fetch(specUrl, { headers: { accept: "application/json" } })
    .then(function (res) { if (!res.ok) throw new Error(specUrl + ": HTTP " + res.status); return res.json(); })
    .then(function (spec) { document.getElementById("status").remove(); render(spec); })
    .catch(function (e) { document.getElementById("status").textContent = "Could not load the API description: " + e.message; });
})();
`;

/** The documentation page; `openApiUrl` is where the page fetches the OpenAPI document. */
export function docsHtml(openApiUrl: string): string {
  const url = escapeHtml(openApiUrl);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shopmesh API</title>
<style>${STYLE}</style>
</head>
<body>
<h1 id="title">shopmesh API</h1>
<p class="muted">REST over JSON, generated from the protobuf contracts. Machine-readable: <a href="${url}">${url}</a>.
The same methods are served over Connect, gRPC and gRPC-Web at <code>/&lt;package&gt;.&lt;Service&gt;/&lt;Method&gt;</code>.</p>
<p><label>Access token (sent as <code>Authorization: Bearer …</code> by the forms below; get one from <code>POST /v1/auth/login</code>)<br>
<input id="token" autocomplete="off" spellcheck="false" placeholder="eyJhbGciOiJFZERTQSIs…"></label></p>
<p id="status">Loading the API description…</p>
<noscript><p>This page renders the API description with JavaScript. Without it, read the document at <a href="${url}">${url}</a>.</p></noscript>
<main id="ops"></main>
<script type="application/json" id="spec-url">${scriptJson(openApiUrl)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
