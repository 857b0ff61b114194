#!/usr/bin/env bash
# Sets up and runs Pi-Controller on this machine, on loopback, for development: installs the
# Debian packages, builds, then under .local/ (or $PI_LOCAL_DIR) creates a controller (its cluster
# CA and certificates are made by `pi-controller init`), an admin bundle for pictl, a join token,
# provisioning profiles from deploy/profiles, a work queue "demo" (HTTP ingress on 127.0.0.1:8080, workers on 127.0.0.1:9943 and the HTTP Pull
# API on 127.0.0.1:9443 with the token in .local/worker-token), and a pi-agent with a simulated
# GPIO chip that joins the controller with that token. Both run until Ctrl-C. A second run reuses
# the state: the agent keeps its node identity and queued messages stay queued.
#   PI_CONTROLLER_PORT (default 9090), PI_AGENT_PORT (default 9091), BUILD_DIR (default build)
set -euo pipefail
cd "$(dirname "$0")/../.."

state=${PI_LOCAL_DIR:-$PWD/.local}
build_dir=${BUILD_DIR:-build}
controller_port=${PI_CONTROLLER_PORT:-9090}
agent_port=${PI_AGENT_PORT:-9091}

deploy/scripts/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j 2 --target pi-controller pi-agent pictl

controller="$build_dir/control-plane/pi-controller"
agent="$build_dir/node-agent/pi-agent"
pictl="$build_dir/control-plane/pictl/pictl"
# Provisioning writes under agent-root instead of this machine's /etc.
mkdir -p "$state/agent" "$state/agent-root"
touch "$state/demo.log"
[[ -s $state/worker-token ]] ||
  (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$state/worker-token")

cat >"$state/controller.json" <<JSON
{
  "state_dir": "$state/controller",
  "listen": "127.0.0.1:$controller_port",
  "http_listen": "127.0.0.1:9900",
  "provisioning": { "profiles_dir": "$PWD/deploy/profiles" },
  "queues": {
    "ingress": { "listen": "127.0.0.1:8080" },
    "pull_api": { "listen": "127.0.0.1:9443", "grpc_listen": "127.0.0.1:9943",
                  "auth_tokens": ["file:$state/worker-token"] },
    "routes": [{ "name": "demo", "ingress_path": "/webhooks/demo", "pull_path": "/pull/demo",
                 "max_depth": 100000, "retention": "168h", "max_attempts": 5 }]
  }
}
JSON
"$controller" --config "$state/controller.json" init >/dev/null
[[ -f $state/pictl/admin.key ]] ||
  "$controller" --config "$state/controller.json" issue-admin "${USER:-admin}" --out "$state/pictl"
export PICTL_CONFIG=$state/pictl/config.json

cat >"$state/agent.json" <<JSON
{
  "listen": "127.0.0.1:$agent_port",
  "http_listen": "127.0.0.1:9101",
  "control_plane": { "state_dir": "$state/agent", "labels": { "role": "demo" } },
  "gpio": {
    "backend": "simulated",
    "allowed_lines": [{ "line": "GPIO17", "mode": "output" }, { "line": "4-27", "mode": "any" }]
  },
  "exec": { "allowed_commands": ["/usr/bin/uptime", "/usr/bin/df", "/bin/echo"] },
  "logs": { "files": { "demo": "$state/demo.log" } },
  "runner": { "filesystem_root": "$state/agent-root", "allowed_write_roots": ["/etc"] }
}
JSON

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
}
trap cleanup EXIT INT TERM

"$controller" --config "$state/controller.json" &
pids+=($!)
for _ in $(seq 50); do
  "$pictl" --timeout 1s tokens list >/dev/null 2>&1 && break
  sleep 0.2
done

join=()
if [[ ! -f $state/agent/control_plane.json ]]; then
  "$pictl" --json tokens create --ttl 10m --max-uses 1 --description run-local |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' >"$state/join-token"
  join=(--join "127.0.0.1:$controller_port" --token-file "$state/join-token")
fi
"$agent" --config "$state/agent.json" "${join[@]}" &
pids+=($!)

cat <<MSG

pi-controller listens on 127.0.0.1:$controller_port (mTLS; metrics on http://127.0.0.1:9900/metrics)
pi-agent joined it and serves NodeAgent on 127.0.0.1:$agent_port (simulated GPIO)
  state:  $state    pictl config: $PICTL_CONFIG
Try it from another terminal:
  export PICTL_CONFIG=$PICTL_CONFIG
  $pictl nodes list
  $pictl metrics $(hostname -s | tr 'A-Z_' 'a-z-')
  $pictl gpio $(hostname -s | tr 'A-Z_' 'a-z-') write GPIO17 1
  $pictl exec $(hostname -s | tr 'A-Z_' 'a-z-') -- /usr/bin/uptime
  $pictl logs $(hostname -s | tr 'A-Z_' 'a-z-') --source demo -f     # then: echo hi >> $state/demo.log
Queue "demo": produce, then pull as a worker (token in $state/worker-token):
  curl -si -X POST --data '{"hello":1}' http://127.0.0.1:8080/webhooks/demo
  curl -s -X POST -H "Authorization: Bearer \$(cat $state/worker-token)" \\
       --data '{"batch":10}' http://127.0.0.1:9443/pull/demo/dequeue
  $pictl queue stats
Provision the agent (it is also a release runner; files land under $state/agent-root):
  $pictl provision motd --all --plan
  $pictl provision motd --all --param message="Hello from pi-controller"
  $pictl releases list
Ctrl-C stops both.

MSG
wait -n "${pids[@]}"
