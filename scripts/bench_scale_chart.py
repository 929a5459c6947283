#!/usr/bin/env python3
"""Figures, charts and the Markdown section of scripts/bench-scale.sh
(issue #24), with the standard library only.

Reads the raw samples the benchmark wrote (one JSON object a line:
section, op, size, unit, samples), writes OUT/scale.json (samples, median,
p90 per operation and size, the run's metadata and the verdicts), one SVG
chart per operation (OUT/scale-<operation>.svg: cost against size, log x
axis) and the section "## Scale (issue #24)" of the Markdown file given
with --docs (replaced if there, appended if not; "-" prints it). A
"#### Notes" subsection at the end of that section, written by hand, is
kept.

Usage: scripts/bench_scale_chart.py --results RESULTS.jsonl --meta META.json
           [--out docs/charts] [--docs docs/benchmarks.md|-]
       scripts/bench_scale_chart.py --from docs/charts/scale.json [...]
           (redraw the charts and the section from a scale.json)
"""
import argparse
import json
import math
import os
import statistics
import sys

SECTION_TITLE = "## Scale (issue #24)"
NOTES_TITLE = "#### Notes"

# (section, op) -> label, chart file stem, x-axis name, whether higher is better.
OPS = {
    ("repos", "repo-create"): ("repository create (POST /api/v1/repositories)", "repo-create"),
    ("repos", "repo-get"): ("repository GET", "repo-get"),
    ("repos", "repo-get-many-grants"): ("repository GET by a user granted read on every repository", "repo-get-many-grants"),
    ("repos", "repo-list"): ("list page (limit=100, after a random id)", "repo-list"),
    ("repos", "repo-note"): ("note filter page (note=team=t7, limit=10)", "repo-note"),
    ("repos", "manifest-push"): ("manifest push to a new name (PUT; creates and publishes the repository)", "manifest-push"),
    ("repos", "blob-head-missing"): ("blob HEAD, 404 (every repository received a blob lately)", "blob-head-missing"),
    ("repos", "catalog-few-grants"): ("catalog page (n=100, after a random name) by a user granted read on 10 of the "
                                      "protected repositories", "catalog-few-grants"),
    ("repos", "catalog-many-grants"): ("the same page by the user granted read on every repository",
                                       "catalog-many-grants"),
    ("repos", "manifest-get"): ("manifest GET by tag (wrk, 32 connections)", "manifest-get"),
    ("repos", "manifest-get-10-repositories"): ("the same GET on a 10-repository server", None),
    ("repos", "startup"): ("server start-up (process start to /api/v1/status)", "startup"),
    ("repos", "startup-pull"): ("server start-up to a manifest GET by tag answered", "startup-pull"),
    ("repos", "startup-whole"): ("server start-up to a catalog page (every publication loaded)", "startup-whole"),
    ("repos", "rss-after-start"): ("server RSS after start-up", "rss"),
    ("repos", "bulk-create-rate"): ("bulk creation (8 connections)", None),
    ("tags", "publish"): ("publish of the repository (task run time)", "tags-publish"),
    ("tags", "manifest-push"): ("one more manifest push into it (PUT, no auto-publish)", "tags-push"),
    ("tags", "manifest-push-published"): ("one more manifest push with auto-publish (PUT; publishes before answering)",
                                          "tags-push-published"),
    ("tags", "manifest-push-held"): ("a manifest push naming a layer the repository holds, unpublished and not received lately",
                                     "tags-push-held"),
    ("tags", "tags-list"): ("tags/list page (n=100, last=a middle tag)", "tags-list"),
    ("tags", "bulk-push-rate"): ("bulk tag push (8 connections)", None),
    ("blobs", "fsck"): ("blob fsck (task run time)", "blobs-fsck"),
    ("blobs", "cleanup"): ("orphan cleanup, protection_minutes=0 (task run time)", "blobs-cleanup"),
    ("blobs", "cleanup-peak-rss"): ("server peak RSS during the cleanup (sampled every 50 ms)", "blobs-cleanup-rss"),
    ("blobs", "fsck-per-blob"): ("blob fsck, per blob", None),
    ("blobs", "cleanup-per-blob"): ("orphan cleanup, per blob", "blobs-cleanup-per-blob"),
    ("blobs", "unlink-floor-per-file"): ("the file system's floor: python stat ×2 + unlink, per file", None),
    ("blobs", "peak-rss-since-start"): ("server peak RSS since start (VmHWM)", None),
    ("blobs", "startup"): ("server start-up over the blob files", None),
}
HIGHER_IS_BETTER = {"req/s", "repositories/s", "tags/s"}
# Operations whose cost should not grow with the size (goal: ≤ 1.5× from
# the smallest size to the largest).
FLAT = {("repos", op) for op in ("repo-create", "repo-get", "repo-get-many-grants", "repo-list", "repo-note",
                                  "manifest-push", "blob-head-missing", "catalog-few-grants",
                                  "catalog-many-grants", "startup", "startup-pull")}
# Operations expected not to grow with the size: more than 1.5× is marked.
EXPECTED_FLAT = FLAT | {("repos", "manifest-get"), ("tags", "manifest-push"), ("tags", "manifest-push-published"),
                        ("tags", "manifest-push-held"), ("tags", "tags-list"),
                        ("blobs", "cleanup-per-blob"), ("blobs", "fsck-per-blob"), ("blobs", "cleanup-peak-rss")}
X_NAME = {"repos": "repositories", "tags": "tags in the repository", "blobs": "orphan blobs"}
GOAL_SIZE = {"repos": (1000, 100000), "tags": (None, 10000), "blobs": (None, 1000000)}


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    k = max(0, math.ceil(p / 100 * len(v)) - 1)
    return v[k]


def figures(rows):
    out = []
    for r in rows:
        s = [x for x in r["samples"] if isinstance(x, (int, float))]
        r = dict(r, samples=s, n=len(s))
        r["median"] = statistics.median(s) if s else None
        r["p90"] = pct(s, 90) if len(s) >= 5 else None
        out.append(r)
    return out


def fmt_size(n):
    for div, suffix in ((1_000_000, "M"), (1000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


def fmt_num(v):
    if v is None:
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}".replace(",", " ")
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_int(n):
    return f"{n:,}"


# ------------------------------------------------------------------ SVG --
def nice_ticks(top, count=4):
    if top <= 0:
        return [0, 1]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(ticks[-1] + step)
    return ticks


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Goal lines drawn on the charts (when within 5× of the figures).
GOAL_LINE = {("repos", "startup"): 1000, ("repos", "startup-whole"): 1000, ("tags", "publish"): 2000,
             ("blobs", "cleanup"): 60, ("blobs", "cleanup-peak-rss"): 200}


def svg_chart(title, x_name, unit, series, path, goal=None):
    """series: list of (name, colour, dashed, [(size, value)])."""
    w, h = 420, 250
    left, right, top, bottom = 62, 18, 34, 48
    pw, ph = w - left - right, h - top - bottom
    xs = sorted({x for _, _, _, pts in series for x, _ in pts})
    ys = [y for _, _, _, pts in series for _, y in pts if y is not None]
    if not xs or not ys:
        return False
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.12
    lo, hi = lo - pad, hi + pad
    if goal is not None and goal > 5 * max(ys):
        goal = None
    yt = nice_ticks(max(ys + ([goal] if goal is not None else [])) * 1.12)
    ytop = yt[-1]

    def px(x):
        return left + (math.log10(x) - lo) / (hi - lo) * pw

    def py(y):
        return top + ph - y / ytop * ph

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="12" font-weight="bold">{esc(title)}</text>']
    step = yt[1] - yt[0]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if step / 10 ** math.floor(math.log10(step)) == 2.5 else 0)
    for t in yt:
        y = py(t)
        o.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        o.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{f"{t:,.{decimals}f}".replace(",", " ")}</text>')
    for x in xs:
        X = px(x)
        o.append(f'<line x1="{X:.1f}" y1="{top + ph}" x2="{X:.1f}" y2="{top + ph + 4}" stroke="#444"/>')
        o.append(f'<text x="{X:.1f}" y="{top + ph + 16}" text-anchor="middle" fill="#444">{fmt_size(x)}</text>')
    o.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#444"/>')
    o.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#444"/>')
    o.append(f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle">{esc(x_name)} (log scale)</text>')
    o.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" '
             f'transform="rotate(-90 14 {top + ph / 2})">{esc(unit)}</text>')
    if goal is not None:
        o.append(f'<line x1="{left}" y1="{py(goal):.1f}" x2="{left + pw}" y2="{py(goal):.1f}" stroke="#2e8b57" '
                 f'stroke-dasharray="2 3"/>')
        o.append(f'<text x="{left + pw - 2}" y="{py(goal) - 4:.1f}" text-anchor="end" fill="#2e8b57" '
                 f'font-size="10">goal {fmt_num(goal)} {esc(unit)}</text>')
    lx = left + 8
    for i, (name, colour, dashed, pts) in enumerate(series):
        pts = [(x, y) for x, y in sorted(pts) if y is not None]
        if not pts:
            continue
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        o.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6"{dash} points="'
                 + " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts) + '"/>')
        for x, y in pts:
            o.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
            # Labelled above the point, below when another series is higher there.
            others = [v for j, (_, _, _, q) in enumerate(series) if j != i for u, v in q if u == x and v is not None]
            above = not others or y > max(others) or (y == max(others) and i == 0)
            ly = py(y) - 6 if above else py(y) + 14
            o.append(f'<text x="{px(x):.1f}" y="{ly:.1f}" text-anchor="middle" fill="{colour}" '
                     f'font-size="10">{fmt_num(y)}</text>')
        o.append(f'<line x1="{lx}" y1="{top + 4}" x2="{lx + 16}" y2="{top + 4}" stroke="{colour}" '
                 f'stroke-width="1.6"{dash}/>')
        o.append(f'<text x="{lx + 20}" y="{top + 8}" fill="#222" font-size="10">{esc(name)}</text>')
        lx += 28 + 6 * len(name)
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
    return True


# ------------------------------------------------------------- verdicts --
def by(figs):
    d = {}
    for r in figs:
        d.setdefault((r["section"], r["op"]), {})[r["size"]] = r
    return d


def ratio_of(cells, unit):
    """Cost at the largest size over the cost at the smallest (for a
    throughput, the cost is its inverse)."""
    sizes = sorted(s for s, r in cells.items() if r["median"])
    if len(sizes) < 2:
        return None
    a, b = cells[sizes[0]]["median"], cells[sizes[-1]]["median"]
    if unit in HIGHER_IS_BETTER:
        return a / b
    return b / a


def at_size(section, largest):
    want = GOAL_SIZE[section][1]
    if largest >= want:
        return ""
    return f" (at {fmt_int(largest)}; the goal's {fmt_int(want)} was not run)"


def verdicts(d):
    out = []

    def add(goal, measured, ok, note=""):
        out.append({"goal": goal, "measured": measured, "met": ok, "note": note})

    for key in sorted(FLAT, key=lambda k: list(OPS).index(k)):
        cells = d.get(key)
        if not cells:
            continue
        unit = next(iter(cells.values()))["unit"]
        r = ratio_of(cells, unit)
        sizes = sorted(cells)
        if r is None:
            continue
        note = "" if sizes[0] <= 1000 and sizes[-1] >= 100000 else \
            f"sizes run: {fmt_int(sizes[0])} → {fmt_int(sizes[-1])}, the goal's are 1,000 → 100,000"
        add(f"{OPS[key][0]}: ≤ 1.5× from the smallest size to the largest",
            f"{r:.2f}× ({fmt_num(cells[sizes[0]]['median'])} → {fmt_num(cells[sizes[-1]]['median'])} {unit})",
            r <= 1.5, note)
    get, ref = d.get(("repos", "manifest-get")), d.get(("repos", "manifest-get-10-repositories"))
    if get and ref:
        n = max(get)
        r = get[n]["median"] / ref[n]["median"]
        add("manifest GET at the largest size ≥ 0.9× the same GET on 10 repositories",
            f"{r:.2f}× ({fmt_num(get[n]['median'])} vs {fmt_num(ref[n]['median'])} req/s)", r >= 0.9,
            at_size("repos", n).strip(" ()"))
    # The start-up goal counts until the server is whole: the catalog
    # answers once every publication is loaded.
    st = d.get(("repos", "startup-whole")) or d.get(("repos", "startup"))
    if st:
        n = max(st)
        v = st[n]["median"]
        add("start-up with 100,000 repositories < 1 s (until every publication is loaded)", f"{fmt_num(v)} ms",
            v < 1000, at_size("repos", n).strip(" ()"))
    pub = d.get(("tags", "publish"))
    if pub:
        n = max(pub)
        v = pub[n]["median"]
        add("publish of a repository of 10,000 tags < 2 s", f"{fmt_num(v)} ms", v < 2000, at_size("tags", n).strip(" ()"))
    push = d.get(("tags", "manifest-push-published"))
    if push and len(push) > 1:
        r = ratio_of(push, "ms")
        lo, hi = min(push), max(push)
        note = "" if lo <= 1000 and hi >= 10000 else f"sizes run: {fmt_int(lo)} → {fmt_int(hi)}, the goal's are 1,000 → 10,000"
        add("a push into a repository of 10,000 tags with auto-publish costs what it costs at 1,000 (≤ 1.5×)",
            f"{r:.2f}× ({fmt_num(push[lo]['median'])} → {fmt_num(push[hi]['median'])} ms)", r <= 1.5, note)
    cl, rss = d.get(("blobs", "cleanup")), d.get(("blobs", "cleanup-peak-rss"))
    if cl:
        n = max(cl)
        v = cl[n]["median"]
        add("orphan cleanup of 1,000,000 blobs < 60 s", f"{fmt_num(v)} s", v < 60, at_size("blobs", n).strip(" ()"))
    if rss:
        n = max(rss)
        v = rss[n]["median"]
        add("… and server RSS during it < 200 MiB", f"{fmt_num(v)} MiB (peak)", v < 200, at_size("blobs", n).strip(" ()"))
    return out


# ------------------------------------------------------------- Markdown --
def table(d, section, sizes):
    head = ["operation", "unit"] + [fmt_int(s) for s in sizes] + ["largest ÷ smallest (cost)"]
    lines = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(sizes) + 1)]
    for (sec, op), (label, _) in OPS.items():
        if sec != section or (sec, op) not in d:
            continue
        cells = d[(sec, op)]
        unit = next(iter(cells.values()))["unit"]
        row = [label, unit]
        for s in sizes:
            r = cells.get(s)
            if not r or r["median"] is None:
                row.append("–")
            elif r["p90"] is not None:
                row.append(f"{fmt_num(r['median'])} / {fmt_num(r['p90'])}")
            elif r["n"] > 1:
                row.append(f"{fmt_num(r['median'])} ({', '.join(fmt_num(x) for x in r['samples'])})")
            else:
                row.append(fmt_num(r["median"]))
        rt = None if op.startswith("bulk-") else ratio_of(cells, unit)
        mark = " **(not flat)**" if rt is not None and rt > 1.5 and (sec, op) in EXPECTED_FLAT else ""
        row.append("–" if rt is None else f"{rt:.2f}×{mark}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def section_md(doc, charts):
    meta, d = doc["meta"], by(doc["figures"])
    sizes = {sec: sorted({r["size"] for r in doc["figures"] if r["section"] == sec}) for sec in X_NAME}
    run_sizes = "; ".join(f"{X_NAME[s]}: {', '.join(fmt_int(n) for n in sizes[s])}" for s in X_NAME if sizes[s])
    full = sizes["repos"] == [1000, 10000, 100000] and sizes["tags"] == [1000, 10000] \
        and sizes["blobs"] == [100000, 1000000]
    p = [SECTION_TITLE, "",
         "What one operation costs as an installation grows: `scripts/bench-scale.sh` builds",
         "installations of growing size against the real server (`target/release/wharf serve`,",
         "the embedded SQLite store, loopback HTTP) and times the same operations at each size.",
         "Raw samples and figures: [charts/scale.json](charts/scale.json).", "",
         "```sh",
         "scripts/bench-scale.sh            # 1k, 10k, 100k repositories; 1k, 10k tags; 100k, 1M blobs (20-30 min)",
         "scripts/bench-scale.sh --quick    # 100, 1k, 5k; 100, 1k; 10k, 100k (about 5 min)",
         "scripts/bench-scale.sh --sizes 1000,10000 --tag-sizes 1000 --blob-sizes ''   # any subset",
         "scripts/bench-scale.sh --store mongodb --out docs/charts/mongodb --docs -   # on MongoDB (secantusdb unless WHARF_BENCH_MONGO_URL)",
         "```", "",
         "| part | how |", "| --- | --- |",
         "| repositories | docker repositories `r000000`…, each with the note `team=t<i mod 100>`, created over 8 kept-alive connections. At each size, "
         f"{meta['samples']} requests per operation timed by curl (`-w %{{time_total}}`, one kept-alive connection), median / p90 in ms: "
         "create, GET of a random one, a list page (`?limit=100&after=<random id>`), a note filter page (`?note=team=t7&limit=10`: 1 % match), the same GET by a user granted read on every repository, "
         "a manifest push to a new name (two monolithic blob uploads, then the timed `PUT /v2/<name>/manifests/latest`, which creates the "
         "repository and publishes it inline), and a blob `HEAD` answered 404 once every repository has received a blob (a note each under "
         "`blobs/sessions/`, written as the server writes them), and a catalog page (`/v2/_catalog?n=100&last=<random name>`) by a user "
         "granted read on 10 repositories and by the one granted read on all, once every repository is protected and published (written "
         "into the SQLite store with the server stopped, before the start-up restarts, so start-up loads them too; not on MongoDB). "
         "Manifest GET by tag of a published repository under "
         f"`wrk -t2 -c32 -d{meta['wrk_seconds']}s` (req/s, 2 rounds), alternated with the same GET on a server of 10 repositories. "
         "Start-up (median of 3 restarts), from the process's start: to `/api/v1/status` answering, RSS (`ps -o rss`) then; to a "
         "manifest GET by tag of a published name answered (served while the publications load); to a catalog page answered (it "
         "waits until every publication is loaded). |",
         "| tags | one repository (`auto_publish` off), one small manifest pushed under N tags (`PUT /v2/scale/many/manifests/t00000`…). "
         "At each N: its publish (task `started_at` → `finished_at`, 3 runs), a `tags/list?n=100&last=<middle tag>` page, one more "
         "manifest `PUT`, one more with `auto_publish` on (the push publishes before it answers, from the previous publication "
         "and the units the push changed), and a `PUT` of a new manifest naming a layer the repository holds but neither published "
         f"nor received lately (its received notes removed) ({meta['samples']} samples each). |",
         "| blobs | N orphan blob files (64 random bytes each, named by their sha256) written into `<data-dir>/blobs/sha256/` with the "
         "server stopped; then `POST /api/v1/blobs/fsck` (task time) and `POST /api/v1/orphans/cleanup?protection_minutes=0` (task time; "
         "server VmRSS sampled every 50 ms during it), one run each; per blob, next to the file system's own floor: "
         "python `stat`ing twice and unlinking up to 20,000 such files. |", "",
         f"### Run of {meta['started']}", "",
         f"Machine: {meta['cores']} cores ({meta['cpu']}), {meta['memory']} RAM, kernel {meta['kernel']}; the servers, curl and wrk share the cores. "
         f"Load average at the start {meta['load_start']}, at the end {meta['load_end']} (`/proc/loadavg`, 1/5/15 min). "
         f"Command: `{meta['command']}` ({meta['started']} → {meta['finished']}). "
         + {"mongodb": "Metadata store: MongoDB (the test run's secantusdb, one database per server). "}.get(meta.get("store"), "Metadata store: the embedded SQLite. ")
         + ("The full sizes." if full else
            f"**Sizes run: {run_sizes}** — {'the `--quick` sizes, ' if meta.get('quick') else ''}not all the goal sizes "
            "(1k → 100k repositories, 10k tags, 1M blobs); the verdicts say so where they apply."),
         "",
         "Cells are median / p90 of the samples (ms unless the unit says otherwise), or the median and the runs in parentheses, "
         "or a single run. The last column is the cost at the largest size over the cost at the smallest (for req/s, "
         "its inverse); **not flat** marks more than 1.5× where the cost should not depend on the size (a publish, "
         "a cleanup or a check of everything grows with it by nature: see their cost per tag or blob).", ""]
    for sec, title in (("repos", "Repositories"), ("tags", "Tags in one repository"), ("blobs", "Orphan blobs")):
        if sizes[sec]:
            p += [f"#### {title}", "", table(d, sec, sizes[sec]), ""]
    vs = doc["verdicts"]
    if vs:
        p += ["#### Goals", "", "| goal | measured | | |", "| --- | --- | --- | --- |"]
        for v in vs:
            p.append(f"| {v['goal']} | {v['measured']} | {'met' if v['met'] else 'NOT met'} | {v['note']} |")
        p.append("")
    if charts:
        p += ["#### Charts", ""]
        row = []
        for stem, label in charts:
            row.append(f"![{label}](charts/scale-{stem}.svg)")
        for i in range(0, len(row), 2):
            p.append(" ".join(row[i:i + 2]))
            p.append("")
    return "\n".join(p).rstrip() + "\n"


def replace_section(path, text):
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        lines = []
    start = next((i for i, l in enumerate(lines) if l.strip() == SECTION_TITLE), None)
    if start is None:
        body = "\n".join(lines).rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        # Notes written by hand at the end of the section ("#### Notes")
        # are kept across runs.
        notes = next((i for i in range(start + 1, end) if lines[i].strip() == NOTES_TITLE), None)
        if notes is not None:
            text = text.rstrip("\n") + "\n\n" + "\n".join(lines[notes:end]).rstrip("\n") + "\n"
        rest = "\n".join(lines[end:])
        body = "\n".join(lines[:start]) + ("\n" if start else "") + text + ("\n" + rest if rest.strip() else "")
        body = body.rstrip("\n") + "\n"
    with open(path, "w") as f:
        f.write(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results")
    ap.add_argument("--meta")
    ap.add_argument("--from", dest="from_json")
    ap.add_argument("--out", default="docs/charts")
    ap.add_argument("--docs", default="docs/benchmarks.md")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            doc = json.load(f)
        figs = figures(doc["figures"])
        meta = doc["meta"]
    else:
        if not (a.results and a.meta):
            ap.error("--results and --meta, or --from")
        with open(a.results) as f:
            figs = figures([json.loads(l) for l in f if l.strip()])
        with open(a.meta) as f:
            meta = json.load(f)
    d = by(figs)
    doc = {"meta": meta, "figures": figs, "verdicts": verdicts(d)}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "scale.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    charts = []
    colours = ("#1f5fa8", "#c0392b")
    for (sec, op), (label, stem) in OPS.items():
        cells = d.get((sec, op))
        if not stem or not cells:
            continue
        unit = next(iter(cells.values()))["unit"]
        series = [("median" if any(r["n"] > 1 for r in cells.values()) else "one run",
                   colours[0], False, [(s, r["median"]) for s, r in cells.items()])]
        if any(r["p90"] is not None for r in cells.values()):
            series.append(("p90", colours[1], True, [(s, r["p90"]) for s, r in cells.items()]))
        if op == "cleanup-per-blob":
            floor = d.get((sec, "unlink-floor-per-file"), {})
            series = [("cleanup", colours[0], False, [(s, r["median"]) for s, r in cells.items()]),
                      ("unlink floor", colours[1], True, [(s, r["median"]) for s, r in floor.items()])]
        if op == "manifest-get":
            ref = d.get((sec, "manifest-get-10-repositories"), {})
            series = [("at that size", colours[0], False, [(s, r["median"]) for s, r in cells.items()]),
                      ("10 repositories", colours[1], True, [(s, r["median"]) for s, r in ref.items()])]
        title = label if len(label) <= 58 else label[:label.rfind(" (", 0, 58)] if " (" in label[:58] else label[:58]
        if svg_chart(title, X_NAME[sec], unit, series, os.path.join(a.out, f"scale-{stem}.svg"),
                     GOAL_LINE.get((sec, op))):
            charts.append((stem, label))
    text = section_md(doc, charts)
    if a.docs == "-":
        sys.stdout.write(text)
    else:
        replace_section(a.docs, text)


if __name__ == "__main__":
    main()
