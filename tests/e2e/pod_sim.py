#!/usr/bin/env python3
"""Runs an injected pod without a cluster (issue 16): the pod's containers as local processes in
a network namespace of their own (the pod's network), started as the kubelet would start them.

    pod_sim.py INJECTED_YAML CONFIGMAPS_DIR WORKDIR NETNS POD_IP TOKEN CLAWGUARD OPENCLAW

- the containers' commands, arguments, environment and ports are the spec's; the clawguard
  image's entrypoint is the real binary (deploy/Dockerfile), the gateway's `openclaw` the real
  CLI from the e2e cache; volumes are directories under WORKDIR, ConfigMaps filled from the
  YAML files in CONFIGMAPS_DIR, every mount path rewritten to its directory (in arguments,
  environment values and ConfigMap contents); the Secret's token is TOKEN;
- native sidecars (init containers with restartPolicy Always) start first, and the next
  container only once their startup probe passes, as the kubelet does;
- then, from outside the pod (the host, as a cluster client and as the kubelet): every HTTP
  probe of every container answers 200; the real CLI reaches the gateway through the pod's
  port; the gateway's own port answers on the pod's loopback but not on the pod's address.

Prints `ok - …` / `not ok - …` lines; exits 1 if any check failed. The processes are killed
at the end.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

failed = 0


def report(ok, what, why=""):
    global failed
    print(f"ok - {what}" if ok else f"not ok - {what}: {why}", flush=True)
    failed += 0 if ok else 1


def http_status(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return None


def wait_for(check, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if check():
            return True
        time.sleep(0.25)
    return False


def main():
    injected, configmaps_dir, work, netns, pod_ip, token, clawguard, openclaw = sys.argv[1:9]
    docs = [d for d in yaml.safe_load_all(open(injected)) if d]
    workload = next(d for d in docs if d.get("kind") in ("Deployment", "Pod"))
    spec = workload["spec"]["template"]["spec"] if workload["kind"] == "Deployment" else workload["spec"]
    configmaps = {}
    for name in sorted(os.listdir(configmaps_dir)):
        if name.endswith(".yaml"):
            for d in yaml.safe_load_all(open(os.path.join(configmaps_dir, name))):
                if d and d.get("kind") == "ConfigMap":
                    configmaps[d["metadata"]["name"]] = d.get("data", {})

    # Volumes as directories; every mount path of the pod maps to its volume's directory.
    volume_dir = {v["name"]: os.path.join(work, "volumes", v["name"]) for v in spec.get("volumes", [])}
    mounts = {}
    for c in spec.get("initContainers", []) + spec["containers"]:
        for m in c.get("volumeMounts", []):
            mounts[m["mountPath"]] = volume_dir[m["name"]]
    # One pass, longest path first, whole path segments only: a directory that replaced one
    # mount path (under /tmp) is never rewritten again by another (/tmp).
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True)) + r")(?![\w.-])")

    def remap(text):
        return pattern.sub(lambda m: mounts[m.group(1)], text) if mounts else text

    for v in spec.get("volumes", []):
        os.makedirs(volume_dir[v["name"]], exist_ok=True)
        if "configMap" in v:
            for key, content in configmaps[v["configMap"]["name"]].items():
                with open(os.path.join(volume_dir[v["name"]], key), "w") as f:
                    f.write(remap(content))

    base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "NODE_PATH", "NODE_COMPILE_CACHE", "TMPDIR")}
    # What the e2e gateway needs on this offline machine besides the spec's environment.
    offline = {"OPENCLAW_DISABLE_BONJOUR": "1", "OPENCLAW_NO_AUTO_UPDATE": "1", "DO_NOT_TRACK": "1", "OPENCLAW_OFFLINE": "1", "OPENCLAW_NO_RESPAWN": "1"}
    home = os.path.join(work, "home")
    os.makedirs(home, exist_ok=True)
    procs = []

    def start(c):
        # The spec's command and arguments, mount paths rewritten; then the program itself, which
        # lives in the image, not under a mount (so it is never rewritten).
        argv = [remap(a) for a in (c.get("command") or []) + c.get("args", [])]
        if not c.get("command"):
            # The clawguard image's entrypoint (deploy/Dockerfile).
            argv = ([clawguard] if c["name"] == "clawguard" else []) + argv
        elif c["command"][0] == "openclaw":
            argv = [openclaw] + argv[1:]
        env = dict(base_env, HOME=home, **offline)
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = remap(e["value"])
            elif e.get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "OPENCLAW_GATEWAY_TOKEN":
                env[e["name"]] = token
        log = open(os.path.join(work, f"{c['name']}.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", netns] + argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work)
        procs.append(p)
        return p

    def probe_url(probe):
        h = probe.get("httpGet")
        return h and f"http://{pod_ip}:{h['port']}{h.get('path', '/')}"

    try:
        for c in spec.get("initContainers", []):
            if c.get("restartPolicy") != "Always":
                report(False, f"init container {c['name']}", "only native sidecars are simulated")
                continue
            start(c)
            url = probe_url(c.get("startupProbe", {}))
            ok = url is not None and wait_for(lambda: http_status(url) == 200, 30)
            report(ok, f"issue 16: pod simulation: the native sidecar {c['name']} started and passed its startup probe ({url}) before the gateway starts", open(os.path.join(work, f"{c['name']}.log")).read()[-600:])
        for c in spec["containers"]:
            start(c)
        gateway = spec["containers"][0]
        internal = int(gateway["args"][gateway["args"].index("--port") + 1])
        inside = wait_for(lambda: subprocess.run(["ip", "netns", "exec", netns, "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{internal}/readyz"], stderr=subprocess.DEVNULL).returncode == 0, 120)
        report(inside, f"issue 16: pod simulation: the gateway answers on the pod's loopback, port {internal}", open(os.path.join(work, f"{gateway['name']}.log")).read()[-800:])
        for c in spec.get("initContainers", []) + spec["containers"]:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                url = probe_url(c.get(kind, {}))
                if url:
                    ok = wait_for(lambda: http_status(url) == 200, 30)
                    report(ok, f"issue 16: pod simulation: the {c['name']} container's {kind} answers 200 from outside the pod ({url})", f"status {http_status(url)}")
        s = socket.socket()
        s.settimeout(2)
        reachable = s.connect_ex((pod_ip, internal)) == 0
        s.close()
        report(not reachable, f"issue 16: pod simulation: the gateway's port {internal} is not reachable on the pod's address {pod_ip}", "it accepted a connection")
        port = next(p["containerPort"] for c in spec.get("initContainers", []) if c["name"] == "clawguard" for p in c["ports"] if p.get("name") == "gateway")
        # A fresh client of the cluster: its new device is remote to the gateway, which asks for
        # pairing; the operator approves it inside the pod, on the gateway's loopback, as in a
        # real deployment; then the call goes through.
        client_home = os.path.join(work, "client-home")
        os.makedirs(client_home, exist_ok=True)
        env = dict(os.environ, HOME=client_home, OPENCLAW_HOME=client_home, OPENCLAW_GATEWAY_URL=f"ws://{pod_ip}:{port}", OPENCLAW_GATEWAY_TOKEN=token)
        env.pop("OPENCLAW_STATE_DIR", None)
        env.pop("OPENCLAW_CONFIG_PATH", None)
        call = [openclaw, "gateway", "call", "health", "--json"]
        out = subprocess.run(call, env=env, capture_output=True, text=True, timeout=60)
        pending = re.search(r'"requestId":\s*"([0-9a-f-]+)"', out.stdout + out.stderr)
        if out.returncode != 0 and pending:
            inside = dict(base_env, HOME=home, OPENCLAW_GATEWAY_TOKEN=token, **offline)
            approved = subprocess.run(["ip", "netns", "exec", netns, openclaw, "devices", "approve", pending.group(1), "--url", f"ws://127.0.0.1:{internal}", "--token", token, "--json"], env=inside, capture_output=True, text=True, timeout=60)
            report(approved.returncode == 0, "issue 16: pod simulation: the new cluster client's device is approved inside the pod", (approved.stdout + approved.stderr)[-400:])
            out = subprocess.run(call, env=env, capture_output=True, text=True, timeout=60)
        ok = out.returncode == 0 and '"ok"' in out.stdout
        report(ok, f"issue 16: pod simulation: the real CLI reaches the gateway through the pod's port {port} (clawguard)", (out.stdout + out.stderr)[-600:])
        log = open(os.path.join(work, "clawguard.log")).read()
        metrics = urllib.request.urlopen(f"http://{pod_ip}:15020/metrics", timeout=5).read().decode()
        opened = sum(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith('clawguard_ws_connections_total{outcome="opened"}'))
        report(opened >= 1, "issue 16: pod simulation: clawguard's metrics show the CLI's connection", log[-400:])
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
