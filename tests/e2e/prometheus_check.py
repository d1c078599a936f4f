#!/usr/bin/env python3
"""Checks a real Prometheus that scraped the e2e suite's clawguard instances (issue 15).

    prometheus_check.py PROMETHEUS_URL DASHBOARD_JSON

Prints one line per check, `ok - …` or `not ok - …`, and exits 1 if any failed:
- the query API returns the refusal counters by rule (WebSocket and HTTP) and by identity,
  with the rules the suite's traffic must have produced;
- every PromQL expression of the Grafana dashboard (panels and annotations, Grafana's
  variables replaced by what Grafana would send) parses and evaluates in this Prometheus;
- the core panels return data.
"""
import json
import sys
import urllib.parse
import urllib.request

# Panels whose queries must return series after the suite's traffic.
CORE_PANELS = [
    "Blocked WebSocket messages by rule",
    "Blocked HTTP requests by route and rule",
    "Most refused identities",
    "WebSocket connections",
    "WebSocket messages",
    "HTTP answers by route and status class",
    "Decision latency",
    "Rate-limited, by limit",
    "Reloads by result",
    "Audit records and losses",
]

# What Grafana substitutes before it sends a query.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "${datasource}": "", "$instance": ".*"}

failed = 0


def report(ok, what, why=""):
    global failed
    if ok:
        print(f"ok - {what}")
    else:
        failed += 1
        print(f"not ok - {what}: {why}")


def query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}") | {"status": "error", "http": e.code}


def series(answer):
    return answer.get("data", {}).get("result", []) if answer.get("status") == "success" else []


def main():
    base, dashboard_path = sys.argv[1], sys.argv[2]
    by_rule = {s["metric"].get("rule") for s in series(query(base, 'sum by (rule) (clawguard_decisions_total{mode="enforce"})'))}
    report("exec-policy" in by_rule and len(by_rule) >= 2, "issue 15: Prometheus has the WebSocket refusals by rule (exec-policy among them)", f"rules {sorted(r for r in by_rule if r)}")
    http_rules = {s["metric"].get("rule") for s in series(query(base, 'sum by (rule) (clawguard_http_decisions_total{mode="enforce"})'))}
    report(len(http_rules) > 0, "issue 15: Prometheus has the HTTP refusals by rule", "none")
    reasons = {s["metric"].get("reason") for s in series(query(base, "sum by (reason) (clawguard_refusals_total)"))}
    report("bad_upgrade" in reasons, "issue 15: Prometheus has the refusals before a decision by reason (bad_upgrade among them)", f"reasons {sorted(r for r in reasons if r)}")
    identities = {s["metric"].get("identity") for s in series(query(base, "sum by (identity) (clawguard_refusals_by_identity_total)"))}
    report("e2e-operator" in identities, "issue 15: refusals by identity name name the suite's identities", f"identities {sorted(i for i in identities if i)}")

    dashboard = json.load(open(dashboard_path))
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    exprs = [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]
    exprs += [(f"annotation {a['name']}", a["expr"]) for a in dashboard.get("annotations", {}).get("list", []) if "expr" in a]
    with_data = {}
    bad = []
    for title, expr in exprs:
        sent = expr
        for var, value in VARIABLES.items():
            sent = sent.replace(var, value)
        answer = query(base, sent)
        if answer.get("status") != "success":
            bad.append(f"{title}: {sent}: {answer.get('error', answer)}")
            continue
        with_data[title] = with_data.get(title, False) or len(series(answer)) > 0
    report(not bad, f"issue 15: all {len(exprs)} PromQL expressions of the dashboard parse and evaluate in Prometheus", "; ".join(bad))
    empty = [t for t in CORE_PANELS if not with_data.get(t)]
    missing = [t for t in CORE_PANELS if t not in {p["title"] for p in panels}]
    report(not empty and not missing, f"issue 15: the {len(CORE_PANELS)} core panels return data", f"no data: {empty}; not in the dashboard: {missing}")
    descriptions = [p["title"] for p in panels if not p.get("description")]
    report(not descriptions, "issue 15: every dashboard panel has a description", f"without: {descriptions}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
