# benchtable.awk turns `go test -bench` output into one Markdown table:
# each benchmark's ratios to its baselines (metrics named x-<baseline>,
# measured in the same run), then its other figures. `task bench` runs it.
function num(v) { return v >= 1000 ? sprintf("%d", v + 0.5) : sprintf("%.3g", v) }
/^pkg: / { pkg = $2; sub(/^github.com\/relay-sh\/relay\/?/, "", pkg); if (pkg == "") pkg = "relay" }
/^Benchmark/ && NF >= 4 {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	ratios = ""; figures = ""
	for (i = 3; i < NF; i += 2) {
		v = $i; u = $(i + 1)
		if (u == "ns/op") continue
		if (u ~ /^x-/) ratios = ratios (ratios == "" ? "" : ", ") sprintf("%.3g× %s", v, substr(u, 3))
		else figures = figures (figures == "" ? "" : ", ") num(v) " " u
	}
	if (ratios == "") ratios = "—"
	rows[++n] = sprintf("| %s | %s | %s | %s |", pkg, name, ratios, figures)
}
/^--- (SKIP|FAIL)/ { skipped = skipped "\n" $0 }
/^    .*_test.go:[0-9]+:/ { skipped = skipped "\n" $0 }
END {
	print ""
	print "| package | benchmark | ratio to baseline (same run) | figures |"
	print "| --- | --- | --- | --- |"
	for (i = 1; i <= n; i++) print rows[i]
	if (skipped != "") print "\nnotes, skips and failures:" skipped
}
