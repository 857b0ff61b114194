#!/usr/bin/env bash
# Sets up and runs Pi-Controller on this machine, on loopback, for development: installs the
# Debian packages, builds, creates a development PKI and configs under .local/ (or $PI_LOCAL_DIR),
# and starts pi-agent in the foreground with mTLS and a simulated GPIO chip. Ctrl-C stops it.
#   PI_AGENT_PORT (default 9091), PI_AGENT_HTTP_PORT (default 9101), BUILD_DIR (default build)
set -euo pipefail
cd "$(dirname "$0")/../.."

state=${PI_LOCAL_DIR:-$PWD/.local}
build_dir=${BUILD_DIR:-build}
agent_port=${PI_AGENT_PORT:-9091}
agent_http_port=${PI_AGENT_HTTP_PORT:-9101}

deploy/scripts/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j 2 --target pi-agent pi_proto_python

pki=$state/pki
mkdir -p "$state"
deploy/pki.sh init "$pki"
[[ -f $pki/agent.crt ]] || deploy/pki.sh issue "$pki" agent "node:$(hostname -s)" --dns localhost --ip 127.0.0.1
[[ -f $pki/admin.crt ]] || deploy/pki.sh issue "$pki" admin "admin:${USER:-admin}"
[[ -f $pki/controller.crt ]] || deploy/pki.sh issue "$pki" controller controller

touch "$state/demo.log"
cat >"$state/agent.json" <<JSON
{
  "listen": "127.0.0.1:$agent_port",
  "http_listen": "127.0.0.1:$agent_http_port",
  "tls": {
    "cert_file": "$pki/agent.crt",
    "key_file": "$pki/agent.key",
    "ca_file": "$pki/ca.crt"
  },
  "gpio": {
    "backend": "simulated",
    "allowed_lines": [{ "line": "GPIO17", "mode": "output" }, { "line": "4-27", "mode": "any" }]
  },
  "exec": { "allowed_commands": ["/usr/bin/uptime", "/usr/bin/df", "/bin/echo"] },
  "logs": { "files": { "demo": "$state/demo.log" } }
}
JSON

cat <<MSG

pi-agent is starting on 127.0.0.1:$agent_port (mTLS) with metrics on http://127.0.0.1:$agent_http_port/metrics
  certificates: $pki (admin: admin.crt/admin.key, CA: ca.crt)
  config:       $state/agent.json
Try it from another terminal:
  curl -s http://127.0.0.1:$agent_http_port/healthz
  PYTHONPATH=$build_dir/proto/python /usr/bin/python3 deploy/scripts/agent_call.py \\
      --pki $pki --address 127.0.0.1:$agent_port metrics

MSG
exec "$build_dir/node-agent/pi-agent" --config "$state/agent.json"
