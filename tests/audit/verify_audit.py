#!/usr/bin/env python3
"""An independent verifier of clawguard's audit log (issue 14), written from docs/audit.md only:
the standard library plus `cryptography` (Debian's python3-cryptography) for Ed25519.

    verify_audit.py [--key PUBLIC_HEX] FILE...

Prints one JSON object: {"verdict": "clean"|"tampered"|"incomplete", "records": N,
"problem": {...} | null, "crashes": N, "last_checkpoint_seq": N | null}; exits 0, 1 or 2 as
`clawguard audit verify` does. It implements the chain, the checkpoint and seal signatures and
the seal rule; it does not try to classify a problem as finely as clawguard does.
"""
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ZERO = "0" * 64


def canonical(value):
    # Keys sorted at every depth, no white space, non-ASCII as UTF-8 (not \u escapes).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record, prev):
    fields = {k: v for k, v in record.items() if k != "hash"}
    h = hashlib.sha256()
    h.update(b"\x00")
    h.update(canonical(fields).encode("utf-8"))
    h.update(prev.encode("ascii"))
    return h.hexdigest()


def signed_message(kind, seq, head, ts, key_id):
    body = canonical({"head": head, "key_id": key_id, "seq": seq, "ts": ts})
    return ("clawguard-audit-%s/1\n" % kind).encode("ascii") + body.encode("utf-8")


def main(argv):
    key = None
    files = []
    i = 0
    while i < len(argv):
        if argv[i] == "--key":
            key = argv[i + 1].lower()
            i += 2
        else:
            files.append(argv[i])
            i += 1
    records = 0
    crashes = 0
    last = None  # (seq, hash)
    last_type = None
    last_checkpoint = None
    result = {"problem": None}

    def fail(path, line, seq, what):
        result["problem"] = {"file": path, "line": line, "seq": seq, "what": what}

    partial = False
    for fi, path in enumerate(files):
        data = open(path, "rb").read()
        text = data.decode("utf-8")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        elif lines:
            if fi == len(files) - 1:
                partial = True
                lines.pop()
            else:
                fail(path, len(lines), None, "partial line before the end")
                break
        for n, line in enumerate(lines, 1):
            try:
                r = json.loads(line)
                seq, prev, h = r["seq"], r["prev"], r["hash"]
            except (ValueError, KeyError, TypeError):
                fail(path, n, None, "unreadable")
                break
            if record_hash(r, prev) != h:
                fail(path, n, seq, "hash mismatch")
                break
            kind = r.get("type", "event")
            if last is None:
                if kind == "genesis" and (seq != 0 or prev != ZERO):
                    fail(path, n, seq, "bad genesis")
                    break
            elif seq != last[0] + 1 or prev != last[1]:
                fail(path, n, seq, "chain broken (expected seq %d after %d)" % (last[0] + 1, last[0]))
                break
            public = r.get("public_key")
            if public is not None:
                if key is None:
                    key = public
                elif key != public:
                    fail(path, n, seq, "another key")
                    break
            if kind in ("checkpoint", "seal"):
                if r.get("signed_seq") != seq - 1 or r.get("signed_head") != prev:
                    fail(path, n, seq, "the signed head is not the previous record")
                    break
                pk = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key))
                if hashlib.sha256(bytes.fromhex(key)).hexdigest()[:16] != r.get("key_id"):
                    fail(path, n, seq, "key id")
                    break
                try:
                    pk.verify(bytes.fromhex(r["signature"]), signed_message(kind, seq - 1, prev, r["ts"], r["key_id"]))
                except (InvalidSignature, ValueError, KeyError):
                    fail(path, n, seq, "bad signature")
                    break
                last_checkpoint = seq
            if kind == "crash":
                crashes += 1
            records += 1
            last = (seq, h)
            last_type = kind
        if result["problem"]:
            break
    if result["problem"]:
        verdict, code = "tampered", 1
    elif partial or records == 0 or last_type != "seal":
        verdict, code = "incomplete", 2
    else:
        verdict, code = "clean", 0
    print(json.dumps({"verdict": verdict, "records": records, "problem": result["problem"], "crashes": crashes, "last_checkpoint_seq": last_checkpoint}))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
