#!/usr/bin/env python3
"""Turn bench/results/raw/ into the markdown report and the SVG chart (stdlib only).

usage: report.py RAW_DIR OUT.md OUT.svg
"""
import json
import os
import re
import statistics
import sys
from html import escape

SLUICE_COLOR, PEER_COLOR, DIRECT_COLOR = "#2b7bb9", "#9a9a9a", "#5aa469"


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def parse_wrk(text):
    m = re.search(r"^BENCH_RESULT (\{.*\})$", text, re.M)
    if not m:
        return None
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    return {
        "requests": r["requests"],
        "rps": r["requests"] / secs if secs else 0.0,
        "errors": r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"],
        "p50": r["p50_us"], "p99": r["p99_us"], "p999": r["p999_us"], "mean": r["lat_mean_us"],
    }


def to_us(value, unit):
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def parse_h2load(text):
    fin = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", text)
    if not fin or not req:
        return None
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    lat = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", text)
    done, succeeded, failed = int(req.group(3)), int(req.group(4)), int(req.group(5))
    non2xx = int(codes.group(3)) + int(codes.group(4)) if codes else 0
    return {
        "requests": done,
        "rps": float(fin.group(2)),
        # h2load has no percentiles; `failed` covers errored and timed-out requests.
        "errors": max(failed, done - succeeded) + non2xx,
        "p50": None, "p99": None, "p999": None,
        "mean": to_us(lat.group(5), lat.group(6)) if lat else None,
    }


def load_runs(raw):
    runs = []
    for meta in read_jsonl(os.path.join(raw, "runs.jsonl")):
        with open(os.path.join(raw, meta["raw"])) as f:
            text = f.read()
        parsed = parse_wrk(text) if meta["proto"] == "h1" else parse_h2load(text)
        if parsed is None:
            parsed = {"requests": 0, "rps": 0.0, "errors": None, "p50": None, "p99": None,
                      "p999": None, "mean": None, "unparsed": True}
        runs.append({**meta, **parsed})
    return runs


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def aggregate(runs):
    """Median across rounds for rates and latencies; sums for errors and CPU."""
    if not runs:
        return None
    reqs = sum(r["requests"] for r in runs)
    ticks = [r["proxy_cpu_ticks"] for r in runs]
    cpu = None
    if reqs and all(t is not None for t in ticks):
        cpu = sum(ticks) / runs[0]["clk_tck"] / reqs * 1e6
    up_cpu = sum(r["upstream_cpu_ticks"] for r in runs) / runs[0]["clk_tck"] / reqs * 1e6 if reqs else None
    hwm = [r["proxy_hwm_kb"] for r in runs if r["proxy_hwm_kb"] is not None]
    errors = [r["errors"] for r in runs]
    return {
        "rounds": len(runs),
        "rps": med([r["rps"] for r in runs]),
        "rps_min": min(r["rps"] for r in runs),
        "rps_max": max(r["rps"] for r in runs),
        "p50": med([r["p50"] for r in runs]),
        "p99": med([r["p99"] for r in runs]),
        "p999": med([r["p999"] for r in runs]),
        "mean": med([r["mean"] for r in runs]),
        "errors": None if any(e is None for e in errors) else sum(errors),
        "requests": reqs,
        "cpu_us": cpu,
        "upstream_cpu_us": up_cpu,
        "hwm_mib": max(hwm) / 1024 if hwm else None,
        "failed_runs": sum(1 for r in runs if r["rc"] != 0 or r.get("unparsed")),
    }


def fmt_rps(v):
    return "—" if v is None else f"{v:,.0f}"


def fmt_lat(us):
    if us is None:
        return "—"
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def fmt_num(v, spec, suffix=""):
    return "—" if v is None else f"{v:{spec}}{suffix}"


def ratio(a, b):
    if a is None or b is None or not b:
        return "—"
    return f"{a / b:.2f}×"


def memory_table(L, rows, what):
    """One memory-scale series: RSS after each step and the cost per added route."""
    L.append(f"**{what}**\n")
    if not rows:
        L.append("*not run*\n")
        return
    L.append("| Routes | RSS | Δ per added route | time to load the step |")
    L.append("|---:|---:|---:|---:|")
    prev = None
    for m in rows:
        per = "—"
        if prev is not None and m["routes"] > prev["routes"]:
            per = f"{(m['rss_kb'] - prev['rss_kb']) / (m['routes'] - prev['routes']):.2f} KiB"
        load = f"{m['load_s']} s" if "load_s" in m else "—"
        L.append(f"| {m['routes']:,} | {m['rss_kb'] / 1024:.1f} MiB | {per} | {load} |")
        prev = m
    by = {m["routes"]: m["rss_kb"] for m in rows}
    top = max(by)
    if 1 in by and top > 1:
        L.append("")
        L.append(f"Per-route cost, 1 → {top:,} routes: {(by[top] - by[1]) / (top - 1):.2f} KiB.")
    L.append("")


def main():
    raw, out_md, out_svg = sys.argv[1:4]
    with open(os.path.join(raw, "meta.json")) as f:
        meta = json.load(f)
    runs = load_runs(raw)
    scen = {s["name"]: s for s in meta["scenarios"]}
    agg = {}
    for name in scen:
        agg[name] = aggregate([r for r in runs if r["scenario"] == name and r["label"] == "main"])
    low = {n: aggregate([r for r in runs if r["scenario"] == n and r["label"] == "lowload"])
           for n in ("direct", "sluice", "nginx", "haproxy")}
    swap_base = aggregate([r for r in runs if r["label"] == "swap-baseline"])
    swap_load = aggregate([r for r in runs if r["label"] == "swap-routes"])
    plugin_base = aggregate([r for r in runs if r["label"] == "plugin-baseline"])
    plugin_load = aggregate([r for r in runs if r["label"] == "plugin-swap"])
    memory = read_jsonl(os.path.join(raw, "memory.jsonl"))
    memory_plugins = read_jsonl(os.path.join(raw, "memory-plugins.jsonl"))
    def admin_stats(prefix):  # the admin.py swap / plugin-swap summaries, one per round
        out = []
        for fn in sorted(os.listdir(raw)):
            if fn.startswith(prefix) and fn.endswith(".json"):
                with open(os.path.join(raw, fn)) as f:
                    text = f.read().strip()
                if text:
                    out.append(json.loads(text))
        return out
    admin = admin_stats("hotswap-admin")
    plugin_admin = admin_stats("pluginswap-admin")

    L = []
    report_name = os.path.splitext(os.path.basename(out_md))[0]
    L.append("# Sluice benchmark: latest run\n" if report_name == "latest" else
             f"# Sluice benchmark: `{report_name}` run (partial: see what it measured below)\n")
    L.append(f"- **Date:** {meta['date']}")
    L.append(f"- **Command:** `{meta['command'].strip()}`")
    measured = [n for n in scen if agg[n]]
    measured += [label for label, ran in [("low load", any(low.values())), ("hot swap", swap_load),
                                          ("plugin swap", plugin_load), ("memory scale", memory),
                                          ("memory scale with plugins", memory_plugins)] if ran]
    L.append(f"- **Measured in this run:** {', '.join(measured) or 'nothing'}")
    L.append(f"- **Machine:** {meta['cpu_model']}, {meta['nproc']} CPUs, Linux {meta['kernel']}; "
             f"load average at the end: {meta['load_avg']}")
    L.append(f"- **Placement:** proxy on CPUs `{meta['cores_proxy']}` with {meta['workers']} worker(s)/thread(s) "
             f"for every contender; wrk/h2load ({meta['load_threads']} thread(s)) and the upstream on CPUs "
             f"`{meta['cores_load']}`")
    L.append(f"- **Load:** {meta['connections']} connections, {meta['duration']} per run, {meta['rounds']} "
             f"alternating rounds (medians shown; req/s range in brackets); h2c: {meta['h2_streams']} "
             f"streams per connection")
    L.append(f"- **Versions:** sluice {meta['sluice_rev']}, nginx {meta['nginx']}, HAProxy {meta['haproxy']}, "
             f"wrk {meta['wrk']}, h2load {meta['h2load']}")
    L.append("- **Upstream:** `bench-upstream` (hyper, HTTP/1.1 keep-alive, 1 KiB body), the same for all. "
             "No contender writes an access log except `sluice-accesslog*`; Sluice collects metrics in every "
             "scenario but `sluice-bare`.\n")

    L.append("## Throughput and latency\n")
    L.append("| Scenario | req/s | p50 | p99 | p99.9 | errors | proxy CPU/req | peak RSS |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    chart = []
    for name, s in scen.items():
        if not s["selected"]:
            continue
        if s["status"] != "ok":
            L.append(f"| {name}: {escape(s['desc'])} | *not available yet* ({s['status'][5:]}) | | | | | | |")
            continue
        a = agg[name]
        if a is None:
            continue
        rng = f" ({a['rps_min']:,.0f}–{a['rps_max']:,.0f})" if a["rounds"] > 1 else ""
        p50 = fmt_lat(a["p50"]) if s["proto"] == "h1" else f"mean {fmt_lat(a['mean'])}"
        errs = "—" if a["errors"] is None else f"{a['errors']:,}"
        if a["failed_runs"]:
            errs += f" ({a['failed_runs']} run(s) failed)"
        L.append(f"| **{name}**: {escape(s['desc'])} | {fmt_rps(a['rps'])}{rng} | {p50} | {fmt_lat(a['p99'])} | "
                 f"{fmt_lat(a['p999'])} | {errs} | {fmt_num(a['cpu_us'], '.1f', ' µs')} | "
                 f"{fmt_num(a['hwm_mib'], '.1f', ' MiB')} |")
        chart.append((name, s, a))
    L.append("")
    L.append("Proxy CPU/req: user+system CPU of the proxy process (nginx: master + workers) during the runs ÷ "
             "requests served (10 ms tick resolution). Peak RSS: the highest `VmHWM` seen in one run, the peak "
             "being reset before each run (nginx: summed over master and workers). Every scenario has its "
             "own proxy process. h2load reports no percentiles: the p50 "
             "column shows its mean, p99/p99.9 are blank.\n")

    def g(name, key="rps"):
        a = agg.get(name)
        return a[key] if a else None

    L.append("## Ratios\n")
    L.append("| Ratio | req/s | proxy CPU/req | p99 |")
    L.append("|---|---:|---:|---:|")
    for label, a, b in [
        ("Sluice / nginx", "sluice", "nginx"),
        ("Sluice / HAProxy", "sluice", "haproxy"),
        ("Sluice / direct", "sluice", "direct"),
        (f"{meta['routes']:,} routes / plain", "sluice-10k", "sluice"),
        ("access log on / plain", "sluice-accesslog", "sluice"),
        ("metrics on (plain) / metrics and access log off", "sluice", "sluice-bare"),
        ("metrics + access log / both off", "sluice-accesslog", "sluice-bare"),
        ("metrics + combined-format access log / both off", "sluice-accesslog-combined", "sluice-bare"),
        ("h2c: Sluice / nginx", "sluice-h2c", "nginx-h2c"),
        ("h2c: Sluice / HAProxy", "sluice-h2c", "haproxy-h2c"),
        ("HTTPS keep-alive: Sluice / nginx", "sluice-tls", "nginx-tls"),
        ("HTTPS, new connection per request: Sluice / nginx", "sluice-tls-new", "nginx-tls-new"),
        ("HTTP/2 over TLS: Sluice / nginx", "sluice-h2", "nginx-h2"),
        ("HTTP/2 upstream / HTTP/1.1 upstream", "sluice-h2-upstream", "sluice"),
        ("noop plugin / plain", "sluice-noop-plugin", "sluice"),
        ("key-auth + limit-count + proxy-cache, miss / plain (distinct URIs)",
         "sluice-3plugins-miss", "sluice-unique"),
        ("key-auth + limit-count + proxy-cache, hit / plain", "sluice-3plugins-hit", "sluice"),
        ("distinct URIs / same URI (load generator's request() cost)", "sluice-unique", "sluice"),
    ]:
        if a is None:
            L.append(f"| {label} | *not available yet* | | |")
            continue
        if agg.get(a) is None or agg.get(b) is None:
            continue
        L.append(f"| {label} | {ratio(g(a), g(b))} | {ratio(g(a, 'cpu_us'), g(b, 'cpu_us'))} | "
                 f"{ratio(g(a, 'p99'), g(b, 'p99'))} |")
    if agg.get("sluice") and agg.get("direct"):
        d50 = g("sluice", "p50") - g("direct", "p50")
        d99 = g("sluice", "p99") - g("direct", "p99")
        L.append("")
        L.append(f"Latency Sluice minus direct, at saturation (not the ≤ 70 % load point of the goal): "
                 f"p50 {d50:+.0f} µs, p99 {d99:+.0f} µs.")
    L.append("")

    if any(low.values()):
        L.append(f"## Added latency at low load\n")
        L.append(f"{meta['low_connections']} connection(s), closed loop (one request in flight per "
                 f"connection), so the proxy runs far below saturation. Added = contender − direct.\n")
        L.append("| Contender | req/s | p50 | p99 | p99.9 | added p50 | added p99 | proxy CPU/req |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        d = low.get("direct")
        for n, a in low.items():
            if a is None:
                continue
            add50 = f"{a['p50'] - d['p50']:+.0f} µs" if d and n != "direct" else "—"
            add99 = f"{a['p99'] - d['p99']:+.0f} µs" if d and n != "direct" else "—"
            L.append(f"| {n} | {fmt_rps(a['rps'])} | {fmt_lat(a['p50'])} | {fmt_lat(a['p99'])} | "
                     f"{fmt_lat(a['p999'])} | {add50} | {add99} | {fmt_num(a['cpu_us'], '.1f', ' µs')} |")
        L.append("")

    def swap_table(base, load, label, stats):
        changes = sum(x["swaps"] for x in stats)
        admin_err = sum(x["admin_errors"] for x in stats)
        put_p50 = med([x["put_p50_us"] for x in stats])
        put_max = max((x["put_max_us"] for x in stats), default=None)
        L.append(f"{changes} changes in all, {admin_err} admin errors, admin PUT median {fmt_lat(put_p50)}, "
                 f"max {fmt_lat(put_max)}. Baseline and change runs alternate.\n")
        L.append("| Run | req/s | p50 | p99 | p99.9 | failed requests |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for name, a in [("baseline (no changes)", base), (label, load)]:
            errs = "—" if a["errors"] is None else f"{a['errors']:,}"
            L.append(f"| {name} | {fmt_rps(a['rps'])} | {fmt_lat(a['p50'])} | {fmt_lat(a['p99'])} | "
                     f"{fmt_lat(a['p999'])} | {errs} |")
        errs = "—" if load["errors"] is None else f"{load['errors']:,}"
        L.append("")
        L.append(f"p99 during changes / baseline: {ratio(load['p99'], base['p99'])}; "
                 f"failed requests during changes: **{errs}** (goal 0).\n")

    L.append("## Hot swap under load\n")
    L.append("### Route changes\n")
    if swap_base and swap_load:
        L.append(f"Plain Sluice; in each swap run the route is re-pointed between two equivalent upstream "
                 f"objects {meta['swaps']} times, spread over the run.")
        swap_table(swap_base, swap_load, f"{meta['swaps']} route changes", admin)
    else:
        L.append("*not run*\n")
    L.append("### Wasm plugin uploads\n")
    if plugin_base and plugin_load:
        L.append(f"Sluice with one route using the Wasm plugin `swap` (config "
                 f"`{{\"name\":\"x-bench\",\"value\":\"1\"}}`); in each swap run `swap` is re-uploaded "
                 f"{meta['plugin_swaps']} times through the admin API, alternately `add-header.wasm` and "
                 f"`noop.wasm`, spread over the run. Each upload is compiled by the gateway on the proxy's CPUs.")
        swap_table(plugin_base, plugin_load, f"{meta['plugin_swaps']} plugin uploads", plugin_admin)
    else:
        L.append("*not run*\n")

    L.append("## Memory scale\n")
    if memory or memory_plugins:
        L.append("RSS of one Sluice instance while routes are added (each route: its own URI, half exact "
                 "`/bench/e<i>`, half prefix `/bench/p<i>/*`, and its own inline upstream).\n")
        memory_table(L, memory, "plain routes")
        memory_table(L, memory_plugins, "each route with 3 Wasm plugins configured its own way "
                     "(proxy-rewrite, response-rewrite, limit-count)")
    else:
        L.append("*not run*\n")

    todo = [s for s in scen.values() if s["status"] != "ok"]
    if todo:
        L.append("## Not measured yet\n")
        for s in todo:
            L.append(f"- `{s['name']}` ({escape(s['desc'])}): {s['status'][5:]}")
        L.append("")

    with open(out_md, "w") as f:
        f.write("\n".join(L))
    with open(out_svg, "w") as f:
        f.write(svg(chart, meta))


def svg(rows, meta):
    """Two horizontal bar panels: throughput and p99, one bar per contender."""
    bar_h, gap, top, label_w, panel_w = 22, 8, 64, 170, 300
    width = label_w + 2 * panel_w + 90
    height = top + len(rows) * (bar_h + gap) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">Sluice benchmark '
           f'({escape(meta["date"][:10])}, proxy CPUs {escape(meta["cores_proxy"])}, '
           f'{meta["workers"]} worker(s), {meta["connections"]} connections)</text>']

    def color(name):
        return DIRECT_COLOR if name == "direct" else SLUICE_COLOR if name.startswith("sluice") else PEER_COLOR

    panels = [("Throughput (req/s, higher is better)", "rps", fmt_rps),
              ("p99 latency (lower is better)", "p99", fmt_lat)]
    for pi, (title, key, fmt) in enumerate(panels):
        x0 = label_w + pi * (panel_w + 45)
        vals = [a[key] for _, _, a in rows if a[key] is not None]
        vmax = max(vals) if vals else 1
        out.append(f'<text x="{x0}" y="{top - 14}" font-weight="bold">{escape(title)}</text>')
        out.append(f'<line x1="{x0}" y1="{top - 6}" x2="{x0}" y2="{height - 30}" stroke="#444"/>')
        for i, (name, s, a) in enumerate(rows):
            y = top + i * (bar_h + gap)
            v = a[key]
            if v is None:
                out.append(f'<text x="{x0 + 4}" y="{y + bar_h - 6}" fill="#777">n/a (h2load has no p99)</text>')
                continue
            w = max(1.0, v / vmax * (panel_w - 70))
            out.append(f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color(name)}"/>')
            out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + bar_h - 6}">{escape(fmt(v))}</text>')
    for i, (name, s, _) in enumerate(rows):
        y = top + i * (bar_h + gap)
        label = name + (" (h2c)" if s["proto"] == "h2c" and "h2c" not in name else "")
        out.append(f'<text x="{label_w - 8}" y="{y + bar_h - 6}" text-anchor="end">{escape(label)}</text>')
    out.append(f'<text x="10" y="{height - 10}" fill="#555">Medians of {meta["rounds"]} alternating rounds '
               f'of {escape(meta["duration"])}; full table in latest.md. Blue: Sluice, grey: peers, '
               f'green: direct to upstream.</text>')
    out.append("</svg>\n")
    return "\n".join(out)


if __name__ == "__main__":
    main()
