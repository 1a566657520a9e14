#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/report.py RESULTS_DIR: the one-page REPORT.md of the last `make bench`, from the
benchmarks' JSON files, with gnuplot PNGs of start latency and batch throughput. A figure a
benchmark did not produce is said to be missing, never invented."""
import json
import os
import subprocess
import sys


def load(d, name):
    try:
        with open(os.path.join(d, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def get(obj, *path):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj


def fmt(v, unit="", digits=1):
    if v is None:
        return "not measured"
    return ("%%.%df" % digits) % v + (" " + unit if unit else "")


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def plot(d, name, title, ylabel, rows):
    """A bar chart (gnuplot, PNG) of rows [(label, value)]; the PNG's name, or None."""
    rows = [(l, v) for l, v in rows if v is not None]
    if not rows:
        return None
    dat = os.path.join(d, name + ".dat")
    with open(dat, "w") as f:
        for i, (label, v) in enumerate(rows):
            f.write('%d "%s" %f\n' % (i, label, v))
    png = name + ".png"
    script = """
set terminal pngcairo size 720,360 noenhanced
set output '%s'
set title '%s'
set ylabel '%s'
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set xtics nomirror
set grid ytics
unset key
plot '%s' using 1:3:xtic(2) with boxes lc rgb '#3465a4', '' using 1:3:(sprintf('%%.1f', $3)) with labels offset 0,1
""" % (os.path.join(d, png), title, ylabel, dat)
    try:
        subprocess.run(["gnuplot"], input=script.encode(), check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print("report: gnuplot failed for %s: %s" % (name, e), file=sys.stderr)
        return None
    finally:
        os.unlink(dat)
    return png


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "bench/results"
    boot, api, ch, eg, batch, dens, diff = (load(d, n) for n in
                                            ("boot", "api", "channel", "egress", "batch", "density", "diff"))
    tcg = get(boot, "series", get(boot, "accel") or "tcg")
    raw_ms = get(tcg, "raw_qemu_to_hello_ms")
    cold_ms = get(tcg, "create_to_hello_ms")
    run_ms = get(tcg, "cordon_run_true_ms")
    warmj = load(d, "warm")
    warm_ms = get(warmj, "results", "warm_start", "cordon")
    sr = get(warmj, "results", "save_restore")
    rows = []

    def row(what, cordon, base, ratio, goal, ok):
        rows.append("| %s | %s | %s | %s | %s | %s |" % (what, cordon, base, ratio, goal, verdict(ok)))

    if boot:
        r = cold_ms / raw_ms if cold_ms and raw_ms else None
        row("cold start: create to agent ready (libvirt) vs raw QEMU to agent ready",
            fmt(cold_ms, "ms", 0), fmt(raw_ms, "ms", 0), fmt(r, "x", 2), "<= 1.2x", r is not None and r <= 1.2)
        r2 = get(boot, "ratio")
        row("`cordon run -- true` end to end vs raw QEMU to agent ready",
            fmt(run_ms, "ms", 0), fmt(raw_ms, "ms", 0), fmt(r2, "x", 2), "<= 1.2x", r2 is not None and r2 <= 1.2)
    row("warm start from the pool (create to first exec, less an exec) vs a cold start through cordond",
        fmt(warm_ms, "ms"), fmt(get(warmj, "results", "warm_start", "baseline"), "ms", 0),
        fmt(get(warmj, "results", "warm_start", "ratio"), "x", 3), "<= 50 ms",
        None if warm_ms is None else warm_ms <= 50)
    if sr:
        row("a clone of a saved idle guest (new name, libvirt restore) to first exec vs its cold "
            "boot to first exec (save: %.0f ms, %.0f MiB file)" % (sr["save_ms"], sr["save_file_mib"]),
            fmt(sr["cordon"], "ms", 0), fmt(sr["baseline"], "ms", 0), fmt(sr["ratio"], "x", 2),
            "faster: use it", sr["ratio"] < 1)
    refill = get(warmj, "results", "pool_refill")
    if refill:
        row("warm pool refill: a clone of its template to the agent's hello vs the template's "
            "cold boot (%d cloned, %d booted)" % (refill["clones"], refill["boots"]),
            fmt(refill["cordon"], "ms", 0), fmt(refill["baseline"], "ms", 0),
            fmt(refill["ratio"], "x", 2), "faster: used", refill["ratio"] < 1)
    sess = get(load(d, "session"), "results")
    if sess:
        for key, what in (("resume_memory", "a session paused in memory: resume to its next exec"),
                          ("resume_disk", "a session saved to disk: resume (restore) to its next exec"),
                          ("reset", "a session's reset (fresh VM at the base commit) to its next exec")):
            r = sess[key]
            row(what + " vs a new sandbox's create to first exec", fmt(r["cordon"], "ms", 0),
                fmt(r["baseline"], "ms", 0), fmt(r["ratio"], "x", 2), "", None)
    if api:
        e = get(api, "results", "exec_true")
        row("exec `true` through cordond vs over the agent channel", fmt(e["cordon"], "ms", 2),
            fmt(e["baseline"], "ms", 2), fmt(e["ratio"], "x", 2), "<= 1.3x", e["ratio"] <= 1.3)
    mcp = load(d, "mcp")
    if mcp:
        goal = get(mcp, "goal_added_ms")
        for key, what in (("exec_true", "exec `true`"), ("list_dir", "list_dir /etc")):
            e = get(mcp, "results", key)
            if e:
                row("%s as an MCP tool call through `cordon mcp` vs the same gRPC call (+%.2f ms)"
                    % (what, e["added_ms"]), fmt(e["cordon"], "ms", 2), fmt(e["baseline"], "ms", 2),
                    fmt(e["ratio"], "x", 2), "<= +%.0f ms" % goal, e["added_ms"] <= goal)
    qga = get(load(d, "qga"), "results", "exec_true")
    row("exec `true` vs qemu-guest-agent guest-exec + guest-exec-status",
        fmt(get(qga, "cordon"), "ms", 2), fmt(get(qga, "baseline"), "ms", 2),
        fmt(get(qga, "ratio"), "x", 1), ">= 5x faster", None if qga is None else qga["ratio"] >= 5)
    over = get(load(d, "qga"), "results", "exec_true_above_spawn")
    if over:
        row("the same, each agent's time above the guest's own spawn of /bin/true (%.1f ms under TCG)"
            % over["guest_spawn"], fmt(over["cordon"], "ms", 2), fmt(over["baseline"], "ms", 2),
            fmt(over["ratio"], "x", 1), "-", None)
    if ch:
        e = get(ch, "results", "archive_stream")
        if e:
            row("archive stream (the tar codec and the channel, no files) vs raw write/read on the "
                "same socketpair", fmt(e["cordon"], "MiB/s"), fmt(e["baseline"], "MiB/s"),
                fmt(e["ratio"], "x", 2), ">= 0.8x", e["ratio"] >= 0.8)
        for k in ("archive_put", "archive_get"):
            e = get(ch, "results", k)
            if e:
                row("%s: a tree through the agent vs raw write/read on the same socketpair" % k, fmt(e["cordon"], "MiB/s"),
                    fmt(e["baseline"], "MiB/s"), fmt(e["ratio"], "x", 2), ">= 0.8x", e["ratio"] >= 0.8)
    if eg:
        row("egress: a download in the guest through the host's proxy vs the same on the host",
            fmt(eg.get("guest_mib_s"), "MiB/s"), fmt(eg.get("host_mib_s"), "MiB/s"),
            fmt(eg.get("ratio"), "x", 2), ">= 0.5x", eg.get("ratio", 0) >= 0.5)
    if dens:
        e = get(dens, "results", "idle_pss")
        row("host memory per idle sandbox (PSS of its QEMU) vs guest RAM", fmt(e["cordon"], "MiB"),
            fmt(e["baseline"], "MiB", 0), fmt(e["ratio"] * 100, "%", 0), "<= 40%", e["ratio"] <= 0.4)
        f = get(dens, "results", "fit")
        row("idle sandboxes that fit in MemAvailable", str(f["idle_sandboxes_that_fit"]),
            fmt(f["memavailable_mib"], "MiB", 0), "-", "-", None)
    if batch:
        t = get(batch, "results", "throughput")
        row("batch of %d `true` tasks (%d at once): tasks/min vs raw QEMU boots" % (batch["tasks"], batch["parallel"]),
            fmt(t["cordon"], "/min"), fmt(t["baseline"], "/min"), fmt(batch["overhead"] * 100, "% overhead"),
            "<= 5%", batch["overhead"] <= 0.05)
        pt = get(batch, "results", "pooled_throughput")
        if pt:
            row("batch of %d `true` tasks (%d at once) with a warm pool of %d (%d sandboxes from it): "
                "tasks/min vs raw QEMU boots" % (pt["tasks"], batch["parallel"], batch["parallel"], pt["from_pool"]),
                fmt(pt["cordon"], "/min"), fmt(pt["baseline"], "/min"), fmt(pt["baseline"] / pt["cordon"] * 100 - 100, "% overhead"),
                "<= 5%", pt["baseline"] / pt["cordon"] - 1 <= 0.05)
        m = get(batch, "results", "cordond_rss")
        g = m["growth_ratio"]
        row("cordond RSS after warm-up vs at the end of the batch", fmt(m["at_end"] / 1024, "MiB"),
            fmt(m["after_warmup"] / 1024, "MiB"), fmt(g, "x", 2), "flat (<= 1.1x)", g <= 1.1)
    else:
        row("batch of 1000 `true` tasks: tasks/min, overhead vs raw boots", "not measured", "-", "-", "<= 5%", None)

    start_png = plot(d, "start_latency", "Start latency (ms, medians)", "ms", [
        ("raw QEMU", raw_ms), ("cordon cold", cold_ms), ("cordon run true", run_ms),
        ("cordon warm", warm_ms), ("clone of a saved guest", get(sr, "cordon"))])
    thr_png = plot(d, "batch_throughput", "Batch throughput (tasks/min)", "tasks/min", [
        ("raw QEMU boots", get(batch, "results", "throughput", "baseline")),
        ("cordon batch", get(batch, "results", "throughput", "cordon")),
        ("cordon batch, warm pool", get(batch, "results", "pooled_throughput", "cordon"))])

    host = next((x["host"] for x in (boot, api, batch, dens, ch) if x and "host" in x), "?")
    accel = get(boot, "accel") or "?"
    out = ["# cordon benchmark report", "",
           "Written by `make bench` (bench/report.py) from `bench/results/*.json`; every figure is a median "
           "of the last run of its benchmark on this host (kernel %s, accelerator %s, %d CPUs). Ratios are against a baseline "
           "measured in the same run." % (host, accel, os.cpu_count() or 0), "",
           "| what | cordon | baseline | ratio | goal | verdict |", "|---|---|---|---|---|---|"]
    out += rows
    out.append("")
    for png, what in ((start_png, "Start latency"), (thr_png, "Batch throughput")):
        out.append("![%s](%s)" % (what, png) if png else "%s: no figures to plot yet." % what)
        out.append("")
    out.append("Not measured here yet (no benchmark produces them): " + ", ".join(
        n for n, v in (("warm start from a pool", warm_ms), ("exec vs qemu-guest-agent", qga),
                       ("1000-task batch", batch), ("idle density", dens)) if v is None) + "."
               if any(v is None for v in (warm_ms, qga, batch, dens)) else "Every figure above was measured, each in its benchmark's last run (its JSON file has the date).")
    with open(os.path.join(d, "REPORT.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("report: %s" % os.path.join(d, "REPORT.md"))


if __name__ == "__main__":
    main()
