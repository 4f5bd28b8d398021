#!/usr/bin/env python3
"""One row of the network lab's table from a scenario's run directory (scripts/netlab.sh).

Reads the viewers' `dsp watch --stats-json` files (their player model: startup, stalls,
rebuffer, gaps, duplicates, switches, each segment's arrival in Unix ms), the publisher's
recording (`published/<seq>.ts`, written when the origin cut the segment: its mtime is the cut
time; the same machine's clock) and the link changes (`events`, Unix ms). With --check-ci it
asserts the facts that must hold today in the CI scenario and exits 1 when one does not.
"""

import argparse
import glob
import json
import os
import statistics
import sys

# The first segments a live start delivers at once are the backlog it asked for (`--live-back`
# 2, plus the one in progress): their latency is the backlog's age, not the path's.
BACKLOG = 3

HEADER = (
    "| scenario | viewers | stream kbit/s | startup ms | stalls | rebuffer | gaps | dups "
    "| latency p50 / p95 s | behind at end | transport at end | switches; attempts "
    "| P2P share |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def load_events(run):
    events = []
    path = os.path.join(run, "events")
    if os.path.exists(path):
        for line in open(path):
            at, _, what = line.strip().partition(" ")
            events.append((int(at), what))
    return events


def published(run):
    """seq -> (cut Unix ms, bytes)."""
    out = {}
    for f in glob.glob(os.path.join(run, "published", "*.ts")):
        seq = int(os.path.basename(f)[:-3])
        st = os.stat(f)
        out[seq] = (int(st.st_mtime * 1000), st.st_size)
    return out


def stream_kbps(pub):
    seqs = sorted(pub)
    if len(seqs) < 3:
        return None
    span = pub[seqs[-1]][0] - pub[seqs[0]][0]
    bits = sum(pub[s][1] for s in seqs[1:]) * 8
    return bits / span if span > 0 else None


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--check-ci", action="store_true")
    a = ap.parse_args()

    events = load_events(a.run)
    changes = [(t, w) for t, w in events if w not in ("viewers start", "viewers stopped")]
    pub = published(a.run)
    viewers = []
    for f in sorted(glob.glob(os.path.join(a.run, "viewer*.json"))):
        try:
            viewers.append(json.load(open(f)))
        except (OSError, ValueError) as e:
            print(f"netlab-report: {f}: {e}", file=sys.stderr)
    if not viewers:
        print(f"netlab-report: no viewer summary in {a.run}", file=sys.stderr)
        return 1

    startups = [v["startup_ms"] for v in viewers if v.get("startup_ms") is not None]
    stalls = sum(v["stalls"] for v in viewers)
    stalled = sum(v["stalled_ms"] for v in viewers)
    played = sum(v["played_ms"] for v in viewers)
    gaps = sum(v["gaps"] for v in viewers)
    dups = [v.get("duplicates") for v in viewers]
    dups = "-" if any(d is None for d in dups) else str(sum(dups))
    lat, behind, ends, switches = [], [], set(), []
    for v in viewers:
        delivered = v.get("delivered", [])
        for seq, at, _t in delivered[BACKLOG:]:
            if seq in pub:
                lat.append((at - pub[seq][0]) / 1000)
        if v.get("last_seq") is not None:
            cut = [s for s, (t, _) in pub.items() if t <= v["written_unix_ms"]]
            if cut:
                behind.append(max(cut) - v["last_seq"])
        ends.add(v.get("transport") or "-")
        t0 = v["started_unix_ms"]
        for s in v.get("switches", []):
            at = f"{s['from']}->{s['to']} at +{(s['unix_ms'] - t0) / 1000:.1f} s ({s['reason']}"
            before = [(t, w) for t, w in changes if t <= s["unix_ms"]]
            if before:
                t, w = before[-1]
                at += f", {(s['unix_ms'] - t) / 1000:.1f} s after '{w}'"
            switches.append(at + ")")
    # Stalls by the link phase they began in (the last link change before them).
    phases = {}
    for v in viewers:
        for start, _ms in v.get("stall_log", []):
            before = [w for t, w in changes if t <= start]
            label = before[-1] if before else "start"
            phases[label] = phases.get(label, 0) + 1
    stall_cell = str(stalls)
    if phases:
        stall_cell += " (" + ", ".join(f"{n} in '{w}'" for w, n in phases.items()) + ")"
    # Switches begun and abandoned (make-before-break: the new connection was closed because
    # the old one kept up): counted from the viewers' logs.
    attempts = 0
    for f in glob.glob(os.path.join(a.run, "viewer*.log")):
        attempts += sum("switched_from=Some" in line for line in open(f, errors="replace"))
    shares = [v["p2p_share"] for v in viewers if "p2p_share" in v]
    kbps = stream_kbps(pub)
    watched = played + stalled
    row = "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n".format(
        a.scenario,
        len(viewers),
        f"{kbps:.0f}" if kbps else "-",
        (f"{startups[0]}" if len(startups) == 1 else
         f"{statistics.median(startups):.0f} (max {max(startups)})") if startups else "never",
        stall_cell,
        f"{100 * stalled / watched:.2f} % ({stalled / 1000:.1f} s)" if watched else "-",
        gaps,
        dups,
        f"{pct(lat, 0.5):.2f} / {pct(lat, 0.95):.2f}" if lat else "-",
        (str(behind[0]) if len(behind) == 1 else f"max {max(behind)}") if behind else "-",
        "/".join(sorted(ends)),
        ("; ".join(switches) if len(viewers) == 1 else f"{len(switches)} in total")
        + f"; {attempts} attempt(s)" if switches or attempts else "none",
        f"{100 * statistics.mean(shares):.1f} %" if shares else "-",
    )
    new = not os.path.exists(a.table)
    with open(a.table, "a") as t:
        if new:
            t.write(HEADER)
        t.write(row)
    print(HEADER + row, end="")

    if a.check_ci:
        return check_ci(viewers[0], events)
    return 0


def check_ci(v, events):
    """Facts that hold today whatever the machine's speed: no gap, no duplicate, the viewer
    is on TCP while UDP is blackholed and keeps receiving there."""
    fails = []
    at = {w: t for t, w in events}
    hole, back = at.get("udp blackhole"), at.get("udp restored")
    if v["gaps"] or v["skipped"]:
        fails.append(f"gaps {v['gaps']} (skipped {v['skipped']})")
    if v["duplicates"]:
        fails.append(f"duplicates {v['duplicates']}")
    final = v.get("viewer") or {}
    if not final:
        fails.append("no final summary (the viewer did not stop cleanly)")
    elif final.get("skipped"):
        fails.append(f"viewer skipped {final['skipped']} sequences")
    if hole is None or back is None:
        fails.append("the blackhole events are missing")
    else:
        during = [d for d in v["delivered"] if hole <= d[1] <= back]
        on_tcp = [d for d in during if d[2] == "tcp"]
        if not on_tcp:
            fails.append("no segment over TCP while UDP was blackholed")
        if during and during[-1][2] != "tcp":
            fails.append(f"the last segment before UDP came back arrived over {during[-1][2]}")
        before = [d for d in v["delivered"] if d[1] < hole]
        was_quic = bool(before) and before[-1][2] != "tcp"
        if was_quic and not any(
            s["to"] == "tcp" and hole <= s["unix_ms"] <= back for s in v["switches"]
        ):
            fails.append("on QUIC before the blackhole, and no switch to TCP during it")
        after = [d for d in v["delivered"] if d[1] > back]
        if not after:
            fails.append("no segment after UDP was restored")
    if fails:
        print("netlab ci FAILED: " + "; ".join(fails))
        return 1
    print("netlab ci ok: 0 gaps, 0 duplicates, on TCP during the UDP blackhole, still receiving")
    return 0


if __name__ == "__main__":
    sys.exit(main())
