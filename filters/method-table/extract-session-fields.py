#!/usr/bin/env python3
"""Derives, for every method of clawguard's method table, which request parameters name a
session, from the handlers of an installed openclaw package (node_modules/openclaw/dist),
and writes filters/method-table/openclaw-<version>-sessions.tsv.

    python3 filters/method-table/extract-session-fields.py ~/.cache/clawguard-e2e/prefix/node_modules/openclaw \
        > filters/method-table/openclaw-2026.9.6-sessions.tsv

A handler is the body of `"<method>": async (...) => { ... }` in dist/. Inside it, a read of
`p.<field>` / `params.<field>` (or a destructuring of params) of a session-naming field counts;
`a ?? b` chains are kept as aliases (`key|sessionKey`: the first present one is read). Methods
whose handler names no session get a `none` row with the reason. The schema's own session
fields (SESSION_PARAMS in method_table.rs) are added to what the handler reads.
"""
import json, os, re, sys

FIELDS = ["sessionKey", "key", "keys", "sessionKeys", "parentSessionKey", "targetSessionKey", "childSessionKey"]
root = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
table = open(os.path.join(here, "..", "src", "protocol", "method_table.rs")).read()
methods = re.findall(r'^\s*\("([^"]+)", Required::', table, re.M)
schema_fields = dict((m, f.split(", ") if f else []) for m, f in re.findall(r'^\s*\("([^"]+)", &\[([^\]]*)\]\)', table, re.M))
schema_fields = {m: [x.strip('"') for x in f] for m, f in schema_fields.items()}
version = json.load(open(os.path.join(root, "package.json")))["version"]

sources = {}
dist = os.path.join(root, "dist")
for name in os.listdir(dist):
    if name.endswith(".mjs") or name.endswith(".js"):
        text = open(os.path.join(dist, name), encoding="utf-8", errors="replace").read()
        if '": async (' in text or '": (' in text:
            sources[name] = text

def body_of(text, start):
    i = text.index("{", text.index("=>", start))
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i:j + 1]
    return text[i:]

def function_body(text, fname):
    m = re.search(r'(?:async )?function ' + re.escape(fname) + r'\(', text)
    if not m:
        return None
    i = text.index("{", text.index(")", m.end()))
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j + 1]
    return None

def handler(method):
    """The handler body: `"m": async (...) => {...}`, or `"m": (opts) => shared({...})`
    followed into the shared function of the same file."""
    key = '"' + re.escape(method) + '"' if "." in method or "-" in method else '(?:"' + re.escape(method) + '"|\\b' + re.escape(method) + ')'
    direct = re.compile(key + r': async \(')
    delegate = re.compile(key + r': \(?\w*\)? => (\w+)\(')
    for name, text in sources.items():
        m = direct.search(text)
        if m:
            return name, body_of(text, m.start())
        m = delegate.search(text)
        if m:
            body = function_body(text, m.group(1))
            if body:
                return name, body
    return None, None

# Fields the extraction finds that do not name a session (checked by hand in dist/).
NOT_SESSIONS = {
    ("push.web.subscribe", "keys"): "Web Push subscription keys (p256dh, auth), not session keys",
}

out = ["# Which request parameters name a session, per method of the openclaw %s gateway, read from" % version,
       "# its handlers (dist/) by extract-session-fields.py, plus the protocol schema's session fields.",
       "# Columns: method, fields (`a|b`: the handler reads `a ?? b`; `none`), where it was read, why."]
for method in methods:
    name, body = handler(method)
    found = []
    how = ""
    if body:
        params_names = set(re.findall(r'const (\w+) = params\b', body)) | {"params", "p"}
        alias = re.findall(r'\b(?:%s)\.(\w+) \?\? (?:%s)\.(\w+)' % ("|".join(params_names), "|".join(params_names)), body)
        for a, b in alias:
            if a in FIELDS or b in FIELDS:
                pair = "|".join(x for x in (a, b) if x in FIELDS)
                if pair not in found:
                    found.append(pair)
        for pn in params_names:
            for f in re.findall(r'\b%s\.(\w+)' % pn, body):
                if f in FIELDS and not any(f in x.split("|") for x in found):
                    found.append(f)
        for group in re.findall(r'const \{([^}]*)\} = (?:params|p)\b', body):
            for f in re.findall(r'\w+', group):
                if f in FIELDS and not any(f in x.split("|") for x in found):
                    found.append(f)
        how = "dist/" + name
    found = [f for f in found if (method, f) not in NOT_SESSIONS]
    for f in schema_fields.get(method, []):
        if not any(f in x.split("|") for x in found):
            found.append(f)
            how = (how + " + schema") if how else "schema"
    if found:
        why = "the handler reads them" if body else "the protocol schema names them (handler not in dist: registered at run time)"
        out.append("\t".join([method, ",".join(found), how, why]))
    elif body:
        why = next((w for (m, _), w in NOT_SESSIONS.items() if m == method), "the handler reads no session-naming parameter")
        out.append("\t".join([method, "none", how, why]))
    else:
        out.append("\t".join([method, "none", "schema", "no handler in dist (plugin or run-time registration) and the schema names no session"]))
print("\n".join(out))
