# benchtable.awk turns `go test -bench` output into one Markdown table:
# each benchmark's ratios to its baselines (metrics named x-<baseline>,
# measured in the same run), then its other figures. `task bench` runs it.
# BenchmarkFetchVsClients's figures are also printed as a table of their
# own: each way of getting the bundle beside the floors of the machine,
# from a seeder on each engine.
function fig(u) { return u != "" && u in fetch ? sprintf("%.2f", fetch[u]) : "" }
function row(what, s, cpu) {
	if (s in fetch || (s "-wireseed") in fetch) print "| " what " | " fig(s) " | " fig(cpu) " | " fig(s "-wireseed") " | " (cpu == "" ? "" : fig(cpu "-wireseed")) " |"
}
function num(v) { return v >= 1000 ? sprintf("%d", v + 0.5) : sprintf("%.3g", v) }
/^pkg: / { pkg = $2; sub(/^github.com\/relay-sh\/relay\/?/, "", pkg); if (pkg == "") pkg = "relay" }
/^Benchmark/ && NF >= 4 {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	ratios = ""; figures = ""
	for (i = 3; i < NF; i += 2) {
		v = $i; u = $(i + 1)
		if (u == "ns/op") continue
		fetch[u] = v
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
	if ("s/relay-fetch-cmd" in fetch || "s/relay-fetch-cmd-wireseed" in fetch) {
		print ""
		print "| fetch of one bundle from one local `relay seed` (best of the rounds) | seconds | CPU s per GiB | seconds, seeder on the wire engine | CPU s per GiB, seeder on the wire engine |"
		print "| --- | --- | --- | --- | --- |"
		row("`relay fetch --out DIR KEY`, the whole command", "s/relay-fetch-cmd", "cpu-s/GiB-relay-fetch-cmd")
		row("`relay fetch --out DIR KEY` on the wire engine (RELAY_ENGINE=wire)", "s/relay-fetch-cmd-wire", "cpu-s/GiB-relay-fetch-cmd-wire")
		row("relay.Client.Fetch in process, the seeder's address given, nothing placed", "s/relay-client-fetch", "")
		row("relay.Client.Fetch on the wire engine", "s/relay-client-fetch-wire", "")
		row("libtorrent, from adding the magnet link to every piece checked", "s/libtorrent-fetch", "")
		row("libtorrent, the whole lt.py run", "s/libtorrent-run", "cpu-s/GiB-libtorrent-run")
		row("aria2, from its first connection to the seeder", "s/aria2-transfer", "")
		row("`openssl dgst -sha256` of the file (SHA-NI)", "s/openssl-sha256", "")
		row("Go crypto/sha256 of the file (SHA-NI)", "s/go-sha256", "")
		row("`cp` of the file", "s/cp", "")
	}
	if (skipped != "") print "\nnotes, skips and failures:" skipped
}
