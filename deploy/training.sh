# deploy/training.sh — what deploy/link/train and deploy/pgo/train share: the DigiCert the
# training talks to (the binary's own `demo` mock, in a process that is not trained), the
# configurations the trained sidecar runs, the sidecar started and stopped as users run it,
# and the requests of every kind it is sent. Sourced, not run.
#
# The caller sets REPO and BIN (the binary to train) and defines say and die; this file sets
# RUN (a fresh directory, removed at exit with everything started here), the configurations
# $RUN/train-{a,b,c}.toml, their paths TRAIN_{A,B,C}_PATHS, and the ports and base URL below.

RUN=$(mktemp -d)
PIDS=()
training_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap training_cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LISTEN=$(free_port) ADMIN=$(free_port)
BASE=http://127.0.0.1:$LISTEN
CODES=()

# start_mock NAME [demo options]: `$BIN demo` (the mock, and a demo sidecar not used here)
# in the background; sets MOCK (CertCentral and DigiCert ONE), MTLS (clientauth) and DIR
# (its credentials and CA).
start_mock() {
    local name=$1 first
    shift
    say "the DigiCert mock: $BIN demo $* (not trained)"
    # An instrumented binary (deploy/pgo/train) writes its profile at exit: the mock's goes
    # aside, not into the sidecar's.
    LLVM_PROFILE_FILE=$RUN/$name-%p.profraw \
        "$BIN" demo --listen "127.0.0.1:$(free_port)" "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    PIDS+=($!)
    for _ in $(seq 100); do
        grep -q 'is running' "$RUN/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    first=$(head -n 2 "$RUN/$name.out" | tr '\n' ' ')
    MOCK=$(sed -nE 's/.*a DigiCert mock on (https:[^ ]+) .*/\1/p' <<<"$first")
    MTLS=$(sed -nE 's/.* and (https:[^ ]+) \(clientauth.*/\1/p' <<<"$first")
    DIR=$(sed -nE 's/.*Credentials are in (.+)\. .*/\1/p' <<<"$first")
    [[ -n $MOCK && -n $MTLS && -d $DIR ]] || die "could not read the demo's mock and files: $first"
}

# Two mocks: one offering HTTP/2 (the sidecar multiplexes), one HTTP/1.1 only (the sidecar
# pools connections): DigiCert's hosts may do either.
start_mock mock-h1 --mock-http1
mock1=$MOCK mtls1=$MTLS dir1=$DIR
start_mock mock-h2
mock=$MOCK mtls=$MTLS dir=$DIR

cat >"$RUN/train-a.toml" <<TOML
# Several routes: key header, mTLS (.p12), Software Trust Manager (both); JSON lines.
[server]
listen = "127.0.0.1:$LISTEN"
admin = "127.0.0.1:$ADMIN"

[log]
format = "json"
level = "info"

[egress]
proxy = "none"

[[routes]]
name = "certcentral"
path_prefix = "/services/v2"
upstream = "$mock"
ca_file = "$dir/mock-ca.pem"
[routes.api_key]
header = "X-DC-DEVKEY"
file = "$dir/devkey"

[[routes]]
name = "digicert-one-mtls"
path_prefix = "/mtls"
strip_prefix = true
upstream = "$mtls"
ca_file = "$dir/mock-ca.pem"
[routes.client_cert]
pkcs12_file = "$dir/service-user.p12"
password_file = "$dir/p12-password"

[[routes]]
name = "software-trust-manager"
path_prefix = "/signingmanager"
upstream = "$mtls"
ca_file = "$dir/mock-ca.pem"
[routes.api_key]
header = "x-api-key"
file = "$dir/api-key"
[routes.client_cert]
pkcs12_file = "$dir/service-user.p12"
password_file = "$dir/p12-password"
TOML

# A key file others can read: the sidecar warns at start (users' files often are so).
install -m 0644 "$dir1/devkey" "$RUN/devkey-0644"
cat >"$RUN/train-b.toml" <<TOML
# The HTTP/1.1-only mock: an mTLS route and a key route to an IP address, with the
# settings people tune and rate limiting off.
[server]
listen = "127.0.0.1:$LISTEN"
admin = "127.0.0.1:$ADMIN"
max_connections = 1024
request_timeout = "60s"

[log]
format = "json"
level = "info"

[egress]
proxy = "none"

[[routes]]
name = "digicert-one-mtls"
path_prefix = "/mtls"
strip_prefix = true
upstream = "${mtls1/localhost/127.0.0.1}"
ca_file = "$dir1/mock-ca.pem"
[routes.client_cert]
pkcs12_file = "$dir1/service-user.p12"
password_file = "$dir1/p12-password"

[[routes]]
name = "certcentral"
path_prefix = "/"
upstream = "${mock1/localhost/127.0.0.1}"
ca_file = "$dir1/mock-ca.pem"
[routes.api_key]
header = "X-DC-DEVKEY"
file = "$RUN/devkey-0644"
[routes.rate_limit]
windows = []
max_in_flight = 64
TOML

cat >"$RUN/train-c.toml" <<TOML
# The smallest configuration, with text lines, to the HTTP/1.1-only mock.
[server]
listen = "127.0.0.1:$LISTEN"
admin = "127.0.0.1:$ADMIN"

[log]
format = "text"

[[routes]]
name = "certcentral"
path_prefix = "/services/v2"
upstream = "$mock1"
ca_file = "$dir1/mock-ca.pem"
[routes.api_key]
header = "X-DC-DEVKEY"
file = "$dir1/devkey"
TOML

# The paths each configuration serves with a 200, in the order of the configurations.
TRAIN_A_PATHS=(/services/v2/user/me /mtls/account/api/v1/user /signingmanager/api/v1/keypairs)
TRAIN_B_PATHS=(/services/v2/user/me /mtls/account/api/v1/user)
TRAIN_C_PATHS=(/services/v2/user/me)

# get CURL-ARGS...: one request; its status (000: no answer) goes to CODES, never stops the run.
get() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$@") || true
    CODES+=("${code:-000}")
}

# training_start CONFIG [WRAPPER...]: start `$BIN run --config CONFIG` (under WRAPPER, if
# given) and wait until it is ready; TRAINED is its pid.
training_start() {
    local config=$1 name
    shift
    name=$(basename "$config" .toml)
    "$@" "$BIN" run --config "$config" >"$RUN/$name.log" 2>&1 &
    TRAINED=$!
    PIDS+=("$TRAINED")
    for _ in $(seq 600); do
        curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && return 0
        kill -0 "$TRAINED" 2>/dev/null || {
            cat "$RUN/$name.log" >&2
            die "the trained sidecar exited"
        }
        sleep 0.1
    done
    die "the trained sidecar never got ready"
}

# training_requests PATH...: each PATH 30 times, then one request of each other kind: a
# POST with a body, a caller's own key, an unknown route, the admin endpoints.
training_requests() {
    local path
    for _ in $(seq 30); do
        for path in "$@"; do get "$BASE$path"; done
    done
    get -X POST -H 'content-type: application/json' \
        -d '{"certificate":{"common_name":"example.com"}}' "$BASE/services/v2/order/certificate/ssl_basic"
    get -H 'X-DC-DEVKEY: not-the-key' "$BASE/services/v2/user/me"
    get "$BASE/no/such/route"
    for path in /healthz /metrics; do get "http://127.0.0.1:$ADMIN$path"; done
}

# training_stop: SIGTERM the trained sidecar and wait for it (it writes its profile at exit).
training_stop() {
    kill -TERM "$TRAINED"
    wait "$TRAINED" || true
}

# training_answered: fail unless some request was answered 200; print the answers' codes.
training_answered() {
    grep -q ' 200 ' <<<" ${CODES[*]} " || die "no request was answered 200 (answers: ${CODES[*]})"
    say "answers while training: $(printf '%s\n' "${CODES[@]}" | sort | uniq -c | tr -s ' \n' ' ')"
}
