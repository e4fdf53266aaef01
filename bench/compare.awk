# compare.awk - fold repeated result lines "W peer param=v ... metric=value unit"
# (ration-bench, cbench, gobench) into medians, then print:
#   1. one summary line per metric: "... metric=MEDIAN unit min=.. max=.. runs=N"
#      (median/min/max per metric), to the file named by -v summary=PATH;
#   2. a Markdown table on stdout: for each workload (W2: each t; lines
#      with cpus=N, the one-CPU runs, in rows of their own) and each
#      ration variant (peer names starting with "ration"), ration's median
#      and every other peer's median with ratio = peer / ration (all metrics
#      are lower-is-better, so ratio > 1 means ration is ahead);
#   3. the targets (issues #5 and #17) with met / not met.
# futex-pingpong runs at t=2 only and is compared with every W2 row.

function fmt(v) { return v >= 1000 ? sprintf("%.0f", v) : v >= 10 ? sprintf("%.1f", v) : v >= 0.1 || v == 0 ? sprintf("%.2f", v) : sprintf("%.2g", v) }
function rfmt(v) { return v >= 100 ? sprintf("%.0f", v) : v >= 10 ? sprintf("%.1f", v) : sprintf("%.2f", v) }

# Shown metrics per workload (the rest are in the summary).
BEGIN {
    show["W1"] = "ns_per_op cs_per_op"
    show["W2"] = "ns_per_op cs_per_op"
    show["W3"] = "ns_per_task cs_per_task peak_rss_kb"
    show["W4"] = "ns_per_task cs_per_task peak_rss_kb"
    show["W5"] = "bytes_per_task submit_ns_per_task drain_ns_per_task cs_per_task"
}

/^W[1-5] / {
    split($(NF - 1), mv, "=")
    w = $1; peer = $2; metric = mv[1]
    params = ""; t = ""; cpus = ""
    for (i = 3; i <= NF - 2; i++) {
        params = params (params == "" ? "" : " ") $i
        if (w == "W2" && $i ~ /^t=/) t = substr($i, 3)
        if ($i ~ /^cpus=/) cpus = "/" substr($i, 6)
    }
    key = w SUBSEP peer SUBSEP params SUBSEP metric
    if (!(key in cnt)) { order[++nk] = key; unit[key] = $NF }
    vals[key, ++cnt[key]] = mv[2] + 0
    # the table's row key: workload + (W2) t + (one-CPU runs) "/cpus"
    rk = w SUBSEP (peer == "futex-pingpong" ? "*" : t cpus)
    if (!((rk, peer) in seen)) { seen[rk, peer] = 1; rpeers[rk] = rpeers[rk] " " peer }
    if (!(rk in rseen)) { rseen[rk] = 1; rows[++nr] = rk }
    rkey[rk, peer, metric] = key
    pparams[rk, peer] = params
}

function median(key,    n, i, j, v, a) {
    n = cnt[key]
    for (i = 1; i <= n; i++) a[i] = vals[key, i]
    for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
    lo[key] = a[1]; hi[key] = a[n]
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

function cell(key) { return fmt(med[key]) (cnt[key] > 1 ? " (" fmt(lo[key]) "–" fmt(hi[key]) ")" : "") }

# The tokens of b that are not in a ("n=50000" for a scaled-down peer).
function diff(a, b,    x, y, i, n, s, has) {
    n = split(a, x, " "); for (i = 1; i <= n; i++) has[x[i]] = 1
    n = split(b, y, " "); s = ""
    for (i = 1; i <= n; i++) if (!(y[i] in has)) s = s (s == "" ? "" : " ") y[i]
    return s
}

# Median for (workload, t, peer, metric), or "" if not measured; t is
# W2's thread count, followed by "/1" for the one-CPU rows.
function M(w, t, peer, metric,    rk) {
    rk = w SUBSEP (peer == "futex-pingpong" ? "*" : t)
    return ((rk, peer, metric) in rkey) ? med[rkey[rk, peer, metric]] : ""
}

function target(what, ok_when, lhs, rhs, bound,    r, ok) {
    if (lhs == "" || rhs == "") { printf "| %s | not measured | — |\n", what; return }
    r = lhs / rhs
    ok = ok_when == "<=" ? r <= bound : r >= bound
    printf "| %s | %s / %s = %s | %s |\n", what, fmt(lhs), fmt(rhs), rfmt(r), ok ? "**met**" : "not met"
}

# Max / min of the runs for (workload, t, peer, metric): bimodality.
function spread(what, w, t, peer, metric, bound,    rk, k, r) {
    rk = w SUBSEP t
    if (!((rk, peer, metric) in rkey)) { printf "| %s | not measured | — |\n", what; return }
    k = rkey[rk, peer, metric]
    if (lo[k] <= 0) { printf "| %s | min 0 | — |\n", what; return }
    r = hi[k] / lo[k]
    printf "| %s | %s / %s = %s | %s |\n", what, fmt(hi[k]), fmt(lo[k]), rfmt(r), r <= bound ? "**met**" : "not met"
}

function target_abs(what, v, bound) {
    if (v == "") { printf "| %s | not measured | — |\n", what; return }
    printf "| %s | %s | %s |\n", what, fmt(v), v <= bound ? "**met**" : "not met"
}

END {
    for (k = 1; k <= nk; k++) med[order[k]] = median(order[k])
    if (summary != "") {
        for (k = 1; k <= nk; k++) {
            key = order[k]; split(key, f, SUBSEP)
            printf "%s %s %s %s=%s %s min=%s max=%s runs=%d\n", f[1], f[2], f[3], f[4], fmt(med[key]),
                unit[key], fmt(lo[key]), fmt(hi[key]), cnt[key] > summary
        }
    }

    print "| workload | params | metric | ration | ration median (min–max) | peer | peer median (min–max) | ratio peer/ration |"
    print "|---|---|---|---|---:|---|---:|---:|"
    for (ws = 1; ws <= 5; ws++) {
        w = "W" ws
        for (r = 1; r <= nr; r++) {
            split(rows[r], rr, SUBSEP)
            if (rr[1] != w || rr[2] == "*") continue
            np = split(rpeers[rows[r]] rpeers[w SUBSEP "*"], plist, " ")
            nm = split(show[w], mets, " ")
            for (bi = 1; bi <= np; bi++) {
                base = plist[bi]
                if (base !~ /^ration/) continue
                for (mi = 1; mi <= nm; mi++) {
                    metric = mets[mi]
                    if (!((rows[r], base, metric) in rkey)) continue
                    bkey = rkey[rows[r], base, metric]
                    bp = pparams[rows[r], base]
                    first = 1
                    for (pi = 1; pi <= np; pi++) {
                        peer = plist[pi]
                        if (peer ~ /^ration/) continue
                        prk = peer == "futex-pingpong" ? w SUBSEP "*" : rows[r]
                        if (!((prk, peer, metric) in rkey)) continue
                        pkey = rkey[prk, peer, metric]
                        d = diff(bp, pparams[prk, peer])
                        ratio = med[bkey] > 0 ? rfmt(med[pkey] / med[bkey]) : "—"
                        if (first)
                            printf "| %s | %s | %s | %s | %s ", w, bp, metric, base, cell(bkey)
                        else
                            printf "| | | | | "
                        printf "| %s%s | %s | %s |\n", peer, d == "" ? "" : " (" d ")", cell(pkey), ratio
                        first = 0
                    }
                    if (first)
                        printf "| %s | %s | %s | %s | %s | — | — | — |\n", w, bp, metric, base, cell(bkey)
                }
            }
        }
    }

    print ""
    print "Targets (issues #5 and #17): ratio = first / second"
    print ""
    print "| target | measured | |"
    print "|---|---|---|"
    target("W1 ration <= 0.5x go-weighted", "<=", M("W1", "", "ration", "ns_per_op"), M("W1", "", "go-weighted", "ns_per_op"), 0.5)
    target("W1 ration <= 1.2x c-posix-sem", "<=", M("W1", "", "ration", "ns_per_op"), M("W1", "", "c-posix-sem", "ns_per_op"), 1.2)
    target("W2 t=2 ration <= go-weighted", "<=", M("W2", "2", "ration", "ns_per_op"), M("W2", "2", "go-weighted", "ns_per_op"), 1)
    split("4 8", ts, " ")
    for (i = 1; i <= 2; i++) {
        t = ts[i]
        target("W2 t=" t " c-wsem >= 20x ration", ">=", M("W2", t, "c-wsem", "ns_per_op"), M("W2", t, "ration", "ns_per_op"), 20)
        target("W2 t=" t " ration <= 1.5x futex-pingpong", "<=", M("W2", t, "ration", "ns_per_op"), M("W2", "2", "futex-pingpong", "ns_per_op"), 1.5)
        target("W2 t=" t " ration <= go-weighted (aim)", "<=", M("W2", t, "ration", "ns_per_op"), M("W2", t, "go-weighted", "ns_per_op"), 1)
    }
    split("ration-group ration-pool", vs, " ")
    for (i = 1; i <= 2; i++) {
        v = vs[i]
        target("W3 " v " <= 0.5x go-errgroup", "<=", M("W3", "", v, "ns_per_task"), M("W3", "", "go-errgroup", "ns_per_task"), 0.5)
        target("W3 c-gthreadpool >= 3x " v, ">=", M("W3", "", "c-gthreadpool", "ns_per_task"), M("W3", "", v, "ns_per_task"), 3)
    }
    target("W4 ration-group ns/task <= go-weighted", "<=", M("W4", "", "ration-group", "ns_per_task"), M("W4", "", "go-weighted", "ns_per_task"), 1)
    target("W4 ration-group peak RSS <= go-weighted", "<=", M("W4", "", "ration-group", "peak_rss_kb"), M("W4", "", "go-weighted", "peak_rss_kb"), 1)
    target_abs("W5 ration-pool bytes/queued task <= 64", M("W5", "", "ration-pool", "bytes_per_task"), 64)
    # issue #17: more threads than CPUs, and one CPU
    target("W1 ration <= 1.1x c-posix-sem", "<=", M("W1", "", "ration", "ns_per_op"), M("W1", "", "c-posix-sem", "ns_per_op"), 1.1)
    split("16 32 64", ts, " ")
    for (i = 1; i <= 3; i++) {
        t = ts[i]
        target("W2 t=" t " ration <= go-weighted", "<=", M("W2", t, "ration", "ns_per_op"), M("W2", t, "go-weighted", "ns_per_op"), 1)
        spread("W2 t=" t " ration max <= 2x min", "W2", t, "ration", "ns_per_op", 2)
    }
    target("W3 one CPU ration-group <= go-errgroup (GOMAXPROCS=1)", "<=", M("W3", "/1", "ration-group", "ns_per_task"), M("W3", "/1", "go-errgroup", "ns_per_task"), 1)
    target("W4 one CPU ration-group <= go-weighted (GOMAXPROCS=1)", "<=", M("W4", "/1", "ration-group", "ns_per_task"), M("W4", "/1", "go-weighted", "ns_per_task"), 1)
}
