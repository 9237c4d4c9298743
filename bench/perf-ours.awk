#!/usr/bin/awk -f
# Reads `perf script -F comm,tid,period,ip,sym,dso` (call graphs, leaf first) and says where
# the time goes in terms of OUR code: each sample is charged to the innermost
# digicert_sidecar:: function on its stack (with what it was doing at the leaf), and each of
# our functions gets its inclusive share. Samples with no digicert_sidecar:: frame are split
# by the task they ran in (the upstream connection task of hyper's client, tokio's scheduler...).

function crate(sym, dso,    s) {
    if (dso ~ /kernel/) return "kernel"
    if (sym ~ /^(_int_|malloc|free|cfree|realloc|calloc|__libc_(malloc|free|calloc|realloc)|unlink_chunk|malloc_consolidate|tcache)/) return "malloc/free"
    if (sym ~ /mem(cpy|move|set|cmp)|strlen/) return "memcpy/memset"
    if (dso ~ /libc/) return "libc:" sym
    if (sym ~ /ring_core|^ring::|aes_|gcm_|GFp|_hw_|sha(256|512)_block|ecp_nistz/) return "ring (crypto)"
    s = sym
    sub(/^(<|&|\*| |dyn |impl |mut )+/, "", s)
    if (match(s, /^[a-z_][a-z0-9_]*::/)) return substr(s, 1, RLENGTH - 2)
    return "other"
}
function ours(sym) { return sym ~ /^<?digicert_sidecar::/ }
function short(sym) {
    gsub(/::\{\{closure\}\}/, "", sym)
    sub(/ as digicert_sidecar::body::OnEnd>::body_ended/, ">::body_ended", sym)
    return sym
}
function flush(    i, leaf, lc, inner, seen, k, u) {
    if (n == 0) return
    total += period
    leaf = crate(sym[1], dso[1])
    if (leaf == "kernel") {            # which syscall: the first user-space frame
        for (i = 2; i <= n; i++) if (dso[i] !~ /kernel/ && sym[i] != "[unknown]") { u = sym[i]; break }
        leaf = "kernel (" (u == "" ? "?" : u) ")"
    }
    inner = ""
    for (i = 1; i <= n; i++) if (ours(sym[i])) { inner = short(sym[i]); break }
    if (inner == "") {
        # Not in a request handler: the scheduler itself (I/O driver, timers, parking and
        # waking workers), else the upstream connection tasks of hyper's client (reading
        # and writing TLS to the upstream), else some other thread.
        inner = "(no digicert_sidecar frame)"
        for (i = 1; i <= n; i++) if (sym[i] ~ /io::driver::Driver::turn|time::Driver::park|park_internal|Waker::wake|Handle::unpark|epoll_wait/) { inner = "(no digicert_sidecar frame) tokio scheduler: I/O driver, timers, parking and waking workers"; break }
        if (inner == "(no digicert_sidecar frame)") for (i = 1; i <= n; i++) if (sym[i] ~ /rustls|hyper::client|role::Client|UpgradeableConnection|PoolClient|futures_util::future::future::[Mm]ap/) { inner = "(no digicert_sidecar frame) upstream connection tasks: hyper client + rustls"; break }
        if (inner == "(no digicert_sidecar frame)" && comm != "tokio-rt-worker") inner = "(no digicert_sidecar frame) thread " comm
    }
    self[inner] += period
    sub_[inner SUBSEP leaf] += period
    delete seen
    for (i = 1; i <= n; i++) if (ours(sym[i])) { k = short(sym[i]); if (!(k in seen)) { seen[k] = 1; incl[k] += period } }
    n = 0
}
/^[^ \t]/ { flush(); comm = $1; period = $NF + 0; if (period == 0) period = 1; next }
/^[ \t]*$/ { flush(); next }
{
    line = $0
    sub(/^[ \t]*[0-9a-f]+ /, "", line)
    d = line; sub(/.* \(/, "", d); sub(/\)$/, "", d)
    s = line; sub(/ \([^()]*\)$/, "", s); sub(/\+0x[0-9a-f]+$/, "", s)
    n++; sym[n] = s; dso[n] = d
}
END {
    flush()
    if (total == 0) { print "no samples"; exit }
    printf "Charged to the innermost digicert_sidecar:: frame (share of the sidecar's CPU samples), with its top leaves:\n\n"
    cmd = "sort -t '\t' -k1,1gr -k2,2gr | cut -f3"
    for (k in self) {
        printf "%.4f\t1e18\t%6.1f%%  %s\n", self[k], 100 * self[k] / total, k | cmd
        for (kk in sub_) {
            split(kk, p, SUBSEP)
            if (p[1] != k || 100 * sub_[kk] / total < 0.5) continue
            printf "%.4f\t%.4f\t          %5.1f%%  %s\n", self[k], sub_[kk], 100 * sub_[kk] / total, p[2] | cmd
        }
    }
    close(cmd)
    printf "\nInclusive share of our functions (self + everything they call):\n\n"
    cmd = "sort -rn"
    for (k in incl) printf "%6.1f%%  %s\n", 100 * incl[k] / total, k | cmd
    close(cmd)
}
