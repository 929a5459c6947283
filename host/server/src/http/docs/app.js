// Wharf's API reference page (/api/v1/docs): fetches the OpenAPI document
// this server serves (openapi.json, beside the page) and renders every
// path, method, parameter, request body and response, grouped by tag, with
// an anchor for each operation and schema. No library and nothing from
// another host; the document's text goes into the page as text
// (createTextNode), never as HTML.
"use strict";

(function () {
  const METHODS = ["get", "put", "post", "patch", "delete", "head", "options", "trace"];
  /// How deep inline schemas are unfolded (named ones are linked instead).
  const MAX_DEPTH = 6;

  // ---------------------------------------------------------------- DOM --

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    return append(el, children);
  }

  function append(el, children) {
    for (const c of [children].flat(Infinity)) {
      if (c === undefined || c === null || c === false || c === "") continue;
      el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /// Paragraphs (split on blank lines) with `code` spans; the rest is text.
  function prose(text) {
    if (!text) return [];
    return String(text)
      .split(/\n\s*\n/)
      .map((para) => {
        const p = h("p", { class: "prose" });
        para.split("`").forEach((part, i) => {
          if (part) append(p, i % 2 ? h("code", {}, part) : part);
        });
        return p;
      });
  }

  // ---------------------------------------------------------- the model --

  function slug(s) {
    return String(s).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  }
  const opAnchor = (method, path) => "op-" + method + "-" + slug(path);
  const schemaAnchor = (name) => "schema-" + slug(name);
  const tagAnchor = (tag) => "tag-" + slug(tag);

  function unescapePointer(p) {
    return decodeURIComponent(p).replace(/~1/g, "/").replace(/~0/g, "~");
  }

  /// The name of a `#/components/schemas/NAME` reference, else null.
  function refName(schema) {
    const prefix = "#/components/schemas/";
    const ref = schema && typeof schema === "object" ? schema.$ref : undefined;
    return typeof ref === "string" && ref.startsWith(prefix)
      ? unescapePointer(ref.slice(prefix.length))
      : null;
  }

  /// Follow `$ref`s inside the document (parameters, bodies, responses).
  function resolve(doc, obj) {
    for (let hops = 0; obj && typeof obj.$ref === "string" && hops < 16; hops++) {
      if (!obj.$ref.startsWith("#/")) return { description: "external reference " + obj.$ref };
      let cur = doc;
      for (const part of obj.$ref.slice(2).split("/")) {
        cur = cur == null ? undefined : cur[unescapePointer(part)];
      }
      if (cur === undefined) return { description: "unresolved reference " + obj.$ref };
      obj = cur;
    }
    return obj || {};
  }

  function join(lists, sep) {
    const out = [];
    lists.forEach((l, i) => {
      if (i) out.push(sep);
      out.push(...l);
    });
    return out;
  }

  /// A schema's type on one line: `string (date-time)`, `array of Task`,
  /// `Task | null`; a named schema is a link to its section.
  function typeNodes(schema) {
    if (schema === undefined || schema === true) return ["any"];
    if (schema === false || schema === null || typeof schema !== "object") return ["any"];
    const name = refName(schema);
    if (name) return [h("a", { href: "#" + schemaAnchor(name), class: "ref" }, name)];
    if (typeof schema.$ref === "string") return [schema.$ref];
    if (Array.isArray(schema.oneOf)) return join(schema.oneOf.map(typeNodes), " | ");
    if (Array.isArray(schema.anyOf)) return join(schema.anyOf.map(typeNodes), " | ");
    if (Array.isArray(schema.allOf)) return join(schema.allOf.map(typeNodes), " & ");
    let types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
    if (!types.length) {
      if (schema.properties) types = ["object"];
      else if (schema.items) types = ["array"];
      else if (schema.enum) types = ["enum"];
    }
    if (!types.length) return ["any"];
    const nodes = join(
      types.map((t) => {
        if (t === "array") return ["array of ", ...typeNodes(schema.items)];
        return [schema.format && t !== "null" ? t + " (" + schema.format + ")" : String(t)];
      }),
      " | ",
    );
    if (schema.nullable === true) nodes.push(" | null");
    return nodes;
  }

  /// Constraints worth a line: enum values, default, bounds, pattern.
  function facts(schema) {
    if (!schema || typeof schema !== "object") return [];
    const out = [];
    const show = (v) => JSON.stringify(v);
    if (Array.isArray(schema.enum)) out.push("one of " + schema.enum.map(show).join(", "));
    if ("const" in schema) out.push("always " + show(schema.const));
    if ("default" in schema) out.push("default " + show(schema.default));
    for (const [k, word] of [
      ["minimum", "at least"],
      ["maximum", "at most"],
      ["exclusiveMinimum", "more than"],
      ["exclusiveMaximum", "less than"],
      ["minLength", "length at least"],
      ["maxLength", "length at most"],
      ["minItems", "items at least"],
      ["maxItems", "items at most"],
    ]) {
      if (typeof schema[k] === "number") out.push(word + " " + schema[k]);
    }
    if (schema.pattern) out.push("matches " + schema.pattern);
    if (schema.readOnly) out.push("read-only");
    if (schema.writeOnly) out.push("write-only");
    if (schema.deprecated) out.push("deprecated");
    if ("example" in schema) out.push("e.g. " + show(schema.example));
    return out.length ? [h("div", { class: "facts" }, out.join("; "))] : [];
  }

  /// What is inside a schema, below its type line: its description and
  /// constraints (unless `bare`), its fields, items and variants. Named
  /// schemas are described once, in the Schemas section.
  function describe(schema, depth, bare) {
    if (!schema || typeof schema !== "object" || refName(schema)) return [];
    const out = bare ? [] : [...prose(schema.description), ...facts(schema)];
    if (depth >= MAX_DEPTH) return out;
    const props = schema.properties && typeof schema.properties === "object" ? schema.properties : {};
    const names = Object.keys(props);
    if (names.length) {
      const required = new Set(Array.isArray(schema.required) ? schema.required : []);
      const rows = names.map((name) => {
        const p = props[name];
        return h(
          "tr",
          {},
          h("td", {}, h("code", {}, name), required.has(name) ? h("span", { class: "req" }, "required") : null),
          h("td", { class: "type" }, typeNodes(p)),
          h("td", {}, prose(p && p.description), facts(p), describe(p, depth + 1, true)),
        );
      });
      out.push(
        h(
          "table",
          { class: "fields" },
          h("thead", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "type"), h("th", {}, "description"))),
          h("tbody", {}, rows),
        ),
      );
    }
    const extra = schema.additionalProperties;
    if (extra && typeof extra === "object") {
      out.push(h("div", { class: "sub" }, "other fields: ", typeNodes(extra), describe(extra, depth + 1)));
    }
    if (schema.items && typeof schema.items === "object" && !refName(schema.items)) {
      const inner = describe(schema.items, depth + 1);
      if (inner.length) out.push(h("div", { class: "sub" }, "each item: ", typeNodes(schema.items), inner));
    }
    for (const [k, word] of [
      ["oneOf", "one of"],
      ["anyOf", "any of"],
      ["allOf", "all of"],
    ]) {
      if (!Array.isArray(schema[k])) continue;
      const variants = schema[k].filter((v) => describe(v, depth + 1).length);
      if (!variants.length) continue;
      out.push(
        h(
          "div",
          { class: "sub" },
          word + ":",
          h("ul", {}, variants.map((v) => h("li", {}, h("div", { class: "type" }, typeNodes(v)), describe(v, depth + 1)))),
        ),
      );
    }
    return out;
  }

  // ---------------------------------------------------------- operations --

  function content(doc, media) {
    const out = [];
    for (const [type, m] of Object.entries(media || {})) {
      const schema = m && m.schema;
      out.push(
        h(
          "div",
          { class: "media" },
          h("div", {}, h("span", { class: "mime" }, type), schema ? [" ", h("span", { class: "type" }, typeNodes(schema))] : null),
          describe(schema, 0),
          m && "example" in m ? h("pre", {}, JSON.stringify(m.example, null, 2)) : null,
        ),
      );
    }
    return out;
  }

  function security(doc, op) {
    const reqs = Array.isArray(op.security) ? op.security : Array.isArray(doc.security) ? doc.security : null;
    if (!reqs) return null;
    const schemes = (doc.components && doc.components.securitySchemes) || {};
    const ways = reqs.map((r) => {
      const names = Object.keys(r || {});
      if (!names.length) return "none (anonymous)";
      return names
        .map((n) => {
          const s = schemes[n] || {};
          return n + (s.scheme ? " (HTTP " + s.scheme + ")" : s.type ? " (" + s.type + ")" : "");
        })
        .join(" and ");
    });
    return h("p", { class: "auth" }, "Authentication: " + ways.join(", or "));
  }

  function parameters(doc, pathItem, op) {
    const byKey = new Map();
    for (const raw of [...(pathItem.parameters || []), ...(op.parameters || [])]) {
      const p = resolve(doc, raw);
      byKey.set(p.in + ":" + p.name, p);
    }
    if (!byKey.size) return null;
    const rows = [...byKey.values()].map((p) =>
      h(
        "tr",
        {},
        h("td", {}, h("code", {}, p.name), p.required ? h("span", { class: "req" }, "required") : null),
        h("td", {}, p.in),
        h("td", { class: "type" }, typeNodes(p.schema)),
        h("td", {}, prose(p.description), facts(p.schema), p.deprecated ? h("div", { class: "facts" }, "deprecated") : null),
      ),
    );
    return [
      h("h4", {}, "Parameters"),
      h(
        "table",
        { class: "params" },
        h("thead", {}, h("tr", {}, h("th", {}, "name"), h("th", {}, "in"), h("th", {}, "type"), h("th", {}, "description"))),
        h("tbody", {}, rows),
      ),
    ];
  }

  function requestBody(doc, op) {
    if (!op.requestBody) return null;
    const body = resolve(doc, op.requestBody);
    return [
      h("h4", {}, "Request body", body.required ? h("span", { class: "req" }, "required") : null),
      prose(body.description),
      content(doc, body.content),
    ];
  }

  function responses(doc, op) {
    const entries = Object.entries(op.responses || {});
    if (!entries.length) return null;
    return [
      h("h4", {}, "Responses"),
      h(
        "dl",
        { class: "responses" },
        entries.map(([status, raw]) => {
          const r = resolve(doc, raw);
          const headers = Object.entries(r.headers || {}).map(([name, hd]) => {
            const header = resolve(doc, hd);
            return h("div", { class: "sub" }, "header ", h("code", {}, name), ": ", typeNodes(header.schema), " ", prose(header.description));
          });
          return [
            h("dt", { class: "status s" + String(status).charAt(0) }, status),
            h("dd", {}, prose(r.description), headers, content(doc, r.content)),
          ];
        }),
      ),
    ];
  }

  function operation(doc, path, method, op, pathItem) {
    const id = opAnchor(method, path);
    const words = [method, path, op.summary, op.description, op.operationId, ...(op.tags || [])].join(" ").toLowerCase();
    return {
      id,
      words,
      method,
      path,
      node: h(
        "section",
        { class: "op", id, "data-words": words },
        h(
          "h3",
          {},
          h("span", { class: "method m-" + method }, method.toUpperCase()),
          " ",
          h("code", { class: "path" }, path),
          " ",
          h("a", { href: "#" + id, class: "anchor", title: "link to this endpoint" }, "#"),
        ),
        op.summary ? h("p", { class: "summary" }, op.summary) : null,
        op.deprecated ? h("p", { class: "facts" }, "Deprecated.") : null,
        op.description && op.description !== op.summary ? prose(op.description) : null,
        security(doc, op),
        parameters(doc, pathItem, op),
        requestBody(doc, op),
        responses(doc, op),
      ),
    };
  }

  // ------------------------------------------------------------ the page --

  function render(doc) {
    const info = doc.info || {};
    document.title = (info.title || "API") + " reference";
    const title = document.getElementById("title");
    title.textContent = info.title || "API";
    const meta = document.getElementById("meta");
    meta.textContent = ["version " + (info.version || "?"), "OpenAPI " + (doc.openapi || doc.swagger || "?")].join(" · ");
    append(document.getElementById("description"), prose(info.description));

    // Operations by tag, in the document's tag order, then first use.
    const groups = new Map();
    for (const t of doc.tags || []) groups.set(t.name, { tag: t, ops: [] });
    for (const [path, rawItem] of Object.entries(doc.paths || {})) {
      const item = resolve(doc, rawItem);
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        const tag = (op.tags && op.tags[0]) || "other";
        if (!groups.has(tag)) groups.set(tag, { tag: { name: tag }, ops: [] });
        groups.get(tag).ops.push(operation(doc, path, method, op, item));
      }
    }

    const main = document.getElementById("content");
    const toc = document.getElementById("toc");
    main.textContent = "";
    toc.textContent = "";
    const tocLists = [];
    for (const { tag, ops } of groups.values()) {
      if (!ops.length) continue;
      const anchor = tagAnchor(tag.name);
      const section = h(
        "section",
        { class: "tag", id: anchor },
        h("h2", {}, tag.name, " ", h("a", { href: "#" + anchor, class: "anchor" }, "#")),
        prose(tag.description),
        ops.map((o) => o.node),
      );
      main.appendChild(section);
      const list = h(
        "ul",
        {},
        ops.map((o) =>
          h("li", { "data-words": o.words }, h("a", { href: "#" + o.id }, h("span", { class: "method m-" + o.method }, o.method.toUpperCase()), " ", o.path)),
        ),
      );
      tocLists.push({ section, list });
      toc.appendChild(h("div", { class: "toc-tag" }, h("a", { href: "#" + anchor, class: "toc-head" }, tag.name), list));
    }

    const schemas = (doc.components && doc.components.schemas) || {};
    const names = Object.keys(schemas).sort();
    if (names.length) {
      main.appendChild(
        h(
          "section",
          { class: "tag", id: "schemas" },
          h("h2", {}, "Schemas ", h("a", { href: "#schemas", class: "anchor" }, "#")),
          names.map((name) =>
            h(
              "section",
              { class: "schema", id: schemaAnchor(name) },
              h("h3", {}, h("code", {}, name), " ", h("a", { href: "#" + schemaAnchor(name), class: "anchor" }, "#")),
              h("div", { class: "type" }, typeNodes(Object.assign({}, schemas[name]))),
              describe(schemas[name], 0),
            ),
          ),
        ),
      );
      toc.appendChild(
        h(
          "div",
          { class: "toc-tag" },
          h("a", { href: "#schemas", class: "toc-head" }, "Schemas"),
          h("ul", {}, names.map((n) => h("li", {}, h("a", { href: "#" + schemaAnchor(n) }, n)))),
        ),
      );
    }

    const filter = document.getElementById("filter");
    filter.hidden = false;
    filter.addEventListener("input", () => {
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      const hit = (el) => words.every((w) => el.getAttribute("data-words").includes(w));
      for (const { section, list } of tocLists) {
        let any = false;
        for (const op of section.querySelectorAll("section.op")) {
          const show = hit(op);
          op.hidden = !show;
          any = any || show;
        }
        for (const li of list.querySelectorAll("li")) li.hidden = !hit(li);
        section.hidden = !any;
      }
    });

    // The content arrived after the browser looked for the fragment.
    if (location.hash.length > 1) {
      const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (target) target.scrollIntoView();
    }
  }

  function fail(message) {
    const status = document.getElementById("status") || document.getElementById("content");
    status.className = "error";
    status.textContent = message;
  }

  function start() {
    const url = document.body.getAttribute("data-openapi") || "openapi.json";
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => {
        if (!r.ok) throw new Error("the server answered " + r.status + " for " + url);
        return r.json();
      })
      .then(render)
      .catch((e) => fail("Cannot show the API reference: " + e.message + ". The document itself is at " + url + "."));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
