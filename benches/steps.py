#!/usr/bin/env python3
"""steps.py: what huststore's /metrics histograms say about a load, step by step (issue 13).

Usage:  benches/steps.py URL [COMMAND ARGS...]

Reads URL/metrics, runs COMMAND (e.g. a wrk run against URL) if one is given, reads it again
and prints, for every histogram of the difference (the request latency, the commit, writes
per commit and the step histograms of worker/src/pass_timings.rs): its count, mean and the
bucket bounds under which 50%, 99% and 99.9% of the observations fall, and the highest bucket
used. Without COMMAND it describes everything since the daemon started. Bounds are the
histogram's buckets, so "p99 <= 0.05" means the 99th percentile is somewhere at or below 50 ms.
"""

import re
import subprocess
import sys
import urllib.request

LINE = re.compile(r'^(\w+)_bucket\{le="([^"]+)"\} (\S+)$')


def snapshot(url):
    """{name: ([(bound, cumulative count)], sum, count)} of every histogram at url."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=10) as r:
        text = r.read().decode()
    hists = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            name, le, n = m.group(1), m.group(2), float(m.group(3))
            bound = float("inf") if le == "+Inf" else float(le)
            hists.setdefault(name, [[], 0.0, 0.0])[0].append((bound, n))
            continue
        for suffix, slot in (("_sum ", 1), ("_count ", 2)):
            name, sep, value = line.partition(suffix)
            if sep and name in hists and " " not in name:
                hists[name][slot] = float(value)
    return hists


def quantile(buckets, count, q):
    for bound, n in buckets:
        if n >= q * count:
            return bound
    return float("inf")


def fmt(bound, seconds):
    if bound == float("inf"):
        return "+Inf"
    return f"{bound * 1000:g} ms" if seconds else f"{bound:g}"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    url = sys.argv[1]
    before = snapshot(url) if len(sys.argv) > 2 else {}
    if len(sys.argv) > 2:
        subprocess.run(sys.argv[2:], check=False)
    after = snapshot(url)
    print(f"| histogram | count | mean | p50 <= | p99 <= | p99.9 <= | highest bucket used |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (buckets, total, count) in after.items():
        old_buckets, old_total, old_count = before.get(name, ([], 0.0, 0.0))
        old = dict(old_buckets)
        buckets = [(b, n - old.get(b, 0.0)) for b, n in buckets]
        total, count = total - old_total, count - old_count
        seconds = name.endswith("_seconds")
        if count <= 0:
            print(f"| {name} | 0 | - | - | - | - | - |")
            continue
        prev, top = 0.0, None
        for bound, n in buckets:
            if n > prev:
                top = bound
            prev = n
        mean = total / count
        mean_s = f"{mean * 1000:.3g} ms" if seconds else f"{mean:.3g}"
        qs = [fmt(quantile(buckets, count, q), seconds) for q in (0.5, 0.99, 0.999)]
        print(f"| {name} | {count:.0f} | {mean_s} | {' | '.join(qs)} | {fmt(top, seconds)} |")


if __name__ == "__main__":
    main()
