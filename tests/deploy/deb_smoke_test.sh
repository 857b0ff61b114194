#!/usr/bin/env bash
# Installs the pi-agent and pi-controller packages of this machine's architecture system-wide with
# dpkg, checks what they put in place, removes, reinstalls and purges them. Root only: it changes
# the machine, so CI calls it (deploy/scripts/test.sh) and ctest does not. Afterwards the machine is
# as before except for the system users and the gpio group, which Debian practice keeps on purge.
# Between install and removal it also does what an operator does after apt install: init the
# controller, issue an admin, join the agent with a token and run both daemons as the units would
# (this machine need not run systemd), on the packaged default ports 9090, 9900, 9091 and 9101.
#   tests/deploy/deb_smoke_test.sh DEB_DIR
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 DEB_DIR" >&2
  exit 2
fi
if ((EUID != 0)); then
  echo "deb_smoke_test: must run as root (it installs packages system-wide)" >&2
  exit 2
fi

fail() {
  echo "FAIL $*" >&2
  exit 1
}
ok() { echo "ok   $*"; }

arch=$(dpkg --print-architecture)
find_deb() {
  local matches=("$1"/"$2"_*_"$arch".deb)
  if ((${#matches[@]} != 1)) || [[ ! -f ${matches[0]} ]]; then
    echo "deb_smoke_test: expected exactly one $2_*_$arch.deb in $1" >&2
    exit 2
  fi
  echo "${matches[0]}"
}
agent_deb=$(find_deb "$1" pi-agent)
controller_deb=$(find_deb "$1" pi-controller)
version=$(dpkg-deb -f "$agent_deb" Version)

packages=(pi-agent pi-controller)
state_dirs=(/var/lib/pi-agent /var/lib/pi-controller)
# Every file a package ships under /etc must be a conffile; the contract names the fixed ones.
etc_files_of() { dpkg-deb -c "$1" | awk '/^-/ && $6 ~ /^\.\/etc\// { print substr($6, 2) }'; }
mapfile -t agent_etc < <(etc_files_of "$agent_deb")
mapfile -t controller_etc < <(etc_files_of "$controller_deb")
etc_files=("${agent_etc[@]}" "${controller_etc[@]}")
for path in /etc/pi-agent/agent.json /etc/default/pi-agent /etc/pi-controller/controller.json \
  /etc/default/pi-controller /etc/pi-controller/profiles/motd.json; do
  [[ " ${etc_files[*]} " == *" $path "* ]] || fail "$path is not in the packages"
done
wants=/etc/systemd/system/multi-user.target.wants

installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null; }

# Purge deletes state: never run over a real installation.
for package in "${packages[@]}"; do
  status=$(installed "$package" || true)
  [[ -z $status || $status == not-installed ]] ||
    fail "$package is already on this machine ($status); the test would purge it"
done
for dir in "${state_dirs[@]}"; do
  [[ ! -e $dir ]] || fail "$dir exists; the test would delete it on purge"
done
# The daemons run with the packaged configuration, so on its fixed ports.
ports=(9090 9900 9091 9101)
busy=$(/usr/bin/python3 - "${ports[@]}" <<'EOF'
import socket, sys
for port in sys.argv[1:]:
    with socket.socket() as s:
        # As the daemons bind: a TIME_WAIT leftover is no conflict, a listener (IPv4 or IPv6) is.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", int(port)))
        except OSError:
            print(port, end=" ")
EOF
)
[[ -z $busy ]] ||
  fail "port(s) ${busy% } in use; the packaged daemons need ${ports[*]} (see ss -ltnp)"

work=$(mktemp -d)
# The admin certificate directory below it belongs to pi-controller, which must reach it.
chmod 0711 "$work"
# Background daemons by unit name: the pid of the runuser process around each.
declare -A runuser_pid=()

# A daemon's own process, a child of runuser (which turns a signal it gets into its own exit
# status instead of the daemon's).
main_pid() { pgrep -P "$1"; }

kill_daemons() {
  local name pid
  for name in "${!runuser_pid[@]}"; do
    pid=${runuser_pid[$name]}
    # shellcheck disable=SC2046 # none or one pid
    kill -KILL $(main_pid "$pid") "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "runuser_pid[$name]"
  done
}

cleanup() {
  kill_daemons
  rm -rf "$work"
  rm -f /etc/pi-agent/join-token
  dpkg --purge "${packages[@]}" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# 1. install
if ! out=$(dpkg -i "$agent_deb" "$controller_deb" 2>&1); then
  echo "$out" >&2
  fail "dpkg -i $(basename "$agent_deb") $(basename "$controller_deb")"
fi
for package in "${packages[@]}"; do
  [[ $(installed "$package") == installed ]] || fail "$package not installed after dpkg -i"
done
ok "dpkg -i installed pi-agent and pi-controller $version ($arch)"

check_version() {
  local program=$1 expected=$2
  shift 2
  [[ $(command -v "$program") == /usr/bin/$program ]] || fail "$program is not /usr/bin/$program"
  local got
  got=$("$program" "$@") || fail "$program $* exited non-zero"
  [[ $got == "$expected" ]] || fail "$program $*: printed '$got', expected '$expected'"
  ok "$program $* prints '$expected'"
}
check_version pi-agent "pi-agent $version" --version
check_version pi-controller "pi-controller $version" --version
# pictl reports its version through a subcommand, not a flag.
check_version pictl "pictl $version" version

check_file() {
  local path=$1 want=$2 got
  [[ -f $path && ! -L $path ]] || fail "$path missing"
  got=$(stat -c '%U:%G %a' "$path")
  [[ $got == "$want" ]] || fail "$path is $got, expected $want"
  ok "$path ($got)"
}
for program in pi-agent pi-controller pictl; do
  check_file "/usr/bin/$program" "root:root 755"
done
for path in /lib/systemd/system/pi-agent.service /lib/systemd/system/pi-controller.service \
  /lib/udev/rules.d/60-pi-agent-gpio.rules "${etc_files[@]}"; do
  check_file "$path" "root:root 644"
done

check_conffiles() {
  local package=$1 conffiles path
  shift
  conffiles=$(dpkg-query -W -f='${Conffiles}\n' "$package")
  for path in "$@"; do
    grep -q "^ $path " <<<"$conffiles" || fail "$path is not a conffile of $package"
  done
  ok "$package: its $# files under /etc are conffiles"
}
check_conffiles pi-agent "${agent_etc[@]}"
check_conffiles pi-controller "${controller_etc[@]}"

check_user() {
  local user=$1 groups entry uid home shell
  entry=$(getent passwd "$user") || fail "user $user missing"
  IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
  ((uid < 1000)) || fail "$user is not a system user (uid $uid)"
  [[ $home == /var/lib/$user && $shell == /usr/sbin/nologin ]] ||
    fail "$user: home $home, shell $shell"
  [[ $(id -gn "$user") == "$user" ]] || fail "$user's primary group is $(id -gn "$user")"
  groups=" $(id -nG "$user") "
  shift
  for group in "$@"; do
    [[ $groups == *" $group "* ]] || fail "$user is not in group $group (groups:$groups)"
  done
  ok "system user $user (uid $uid, groups $(id -nG "$user"))"
}
getent group gpio >/dev/null || fail "group gpio missing"
agent_groups=(gpio)
getent group systemd-journal >/dev/null && agent_groups+=(systemd-journal)
check_user pi-agent "${agent_groups[@]}"
check_user pi-controller

check_state_dir() {
  local dir=/var/lib/$1 got
  [[ -d $dir ]] || fail "$dir missing"
  got=$(stat -c '%U:%G %a' "$dir")
  [[ $got == "$1:$1 700" ]] || fail "$dir is $got, expected $1:$1 700"
  ok "$dir ($got)"
}
check_state_dir pi-agent
check_state_dir pi-controller
provision_root=$(stat -c '%U:%G %a' /etc/pi-provision 2>/dev/null || true)
[[ $provision_root == "pi-agent:pi-agent 755" ]] ||
  fail "/etc/pi-provision is '${provision_root:-missing}', expected pi-agent:pi-agent 755"
ok "/etc/pi-provision ($provision_root), the runner's default write root"

for unit in pi-agent.service pi-controller.service; do
  # Unknown keys and the like are warnings with exit status 0: any output fails.
  if ! out=$(systemd-analyze verify "/lib/systemd/system/$unit" 2>&1) || [[ -n $out ]]; then
    echo "$out" >&2
    fail "systemd-analyze verify $unit"
  fi
  ok "systemd-analyze verify /lib/systemd/system/$unit"
done

check_enabled() {
  [[ $(readlink "$wants/$1") == /lib/systemd/system/$1 ]] || fail "$1 is not enabled ($wants/$1)"
}
check_enabled pi-agent.service
check_enabled pi-controller.service
ok "both units enabled in $wants"

# Not started: no process runs an installed binary (tests elsewhere may run build-tree copies).
for pid_dir in /proc/[0-9]*; do
  exe=$(readlink "$pid_dir/exe" 2>/dev/null) || continue
  case $exe in
  /usr/bin/pi-agent | /usr/bin/pi-controller) fail "$exe is running (pid ${pid_dir#/proc/})" ;;
  esac
done
ok "neither daemon is running"

# 2. first start, as an operator after apt install, with the installed files and users only
fail_logs() {
  local name
  for name in pi-controller pi-agent; do
    [[ ! -s $work/$name.log ]] || sed "s/^/$name: /" "$work/$name.log" >&2
  done
  fail "$@"
}

# The value of KEY= in a unit file; fails unless there is exactly one.
unit_key() {
  local values
  mapfile -t values < <(sed -n "s/^$2=//p" "$1")
  ((${#values[@]} == 1)) || fail "$1: expected one $2=, found ${#values[@]}"
  echo "${values[0]}"
}

# Runs a unit's ExecStart= in the background the way systemd would, so that changes to the units
# are tested: as its User=, with its UMask=, in /, after reading its EnvironmentFile= (an unbraced
# $VAR splits into words; systemd does the same), without NOTIFY_SOCKET (no service manager).
start_unit() {
  local name=$1 unit=/lib/systemd/system/$1.service user umask env_file exec_start word
  local variable value
  local words=() split=() args=()
  user=$(unit_key "$unit" User)
  umask=$(unit_key "$unit" UMask)
  env_file=$(unit_key "$unit" EnvironmentFile)
  exec_start=$(unit_key "$unit" ExecStart)
  read -ra words <<<"$exec_start"
  [[ ${words[0]} == /* ]] || fail "$unit: ExecStart=$exec_start does not start with a path"
  for word in "${words[@]}"; do
    if [[ $word =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
      variable=${BASH_REMATCH[1]}
      value=$(
        # shellcheck disable=SC1090 # the installed conffile, as the unit reads it
        [[ $env_file == -* && ! -e ${env_file#-} ]] || . "${env_file#-}"
        printf '%s' "${!variable-}"
      ) || fail "cannot read ${env_file#-}"
      read -ra split <<<"$value"
      args+=("${split[@]}")
    elif [[ $word == *'$'* ]]; then
      fail "$unit: the test does not expand '$word' of ExecStart= like systemd; teach it"
    else
      args+=("$word")
    fi
  done
  (
    unset NOTIFY_SOCKET
    cd /
    umask "$umask"
    exec runuser -u "$user" -- "${args[@]}"
  ) >>"$work/$name.log" 2>&1 &
  runuser_pid[$name]=$!
}

# Runs "$@" every 0.2 s until it succeeds, for at most $1 seconds; gives up early when a daemon
# exited, since waiting cannot help then.
wait_for() {
  local deadline=$((SECONDS + $1)) name
  shift
  until "$@"; do
    for name in "${!runuser_pid[@]}"; do
      kill -0 "${runuser_pid[$name]}" 2>/dev/null || {
        echo "$name exited" >&2
        return 1
      }
    done
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Seconds since $1, an earlier $EPOCHREALTIME, to a tenth.
since() {
  local us=$((${EPOCHREALTIME/./} - ${1/./}))
  echo "$((us / 1000000)).$((us / 100000 % 10)) s"
}

stop_unit() {
  local name=$1 pid=${runuser_pid[$1]} main started status=0
  main=$(main_pid "$pid") || fail_logs "$name is not running"
  started=$EPOCHREALTIME
  kill -TERM "$main"
  while kill -0 "$pid" 2>/dev/null; do
    ((${EPOCHREALTIME/./} - ${started/./} < 10000000)) ||
      fail_logs "$name still runs 10 s after SIGTERM"
    sleep 0.1
  done
  wait "$pid" || status=$?
  unset "runuser_pid[$name]"
  ((status == 0)) || fail_logs "$name exited with status $status on SIGTERM"
  ok "$name stopped on SIGTERM with status 0 in $(since "$started")"
}

controller_healthy() {
  /usr/bin/python3 -c '
import urllib.request
urllib.request.urlopen("http://127.0.0.1:9900/healthz", timeout=1)' 2>/dev/null
}

start_controller() {
  local started=$EPOCHREALTIME
  start_unit pi-controller
  wait_for 20 controller_healthy ||
    fail_logs "pi-controller: no /healthz on 127.0.0.1:9900 within 20 s"
  ok "pi-controller started from its unit as pi-controller, /healthz ok in $(since "$started")"
}

# Prints the id of the one node if it is READY with a heartbeat after $1 (an $EPOCHREALTIME):
# the controller keeps the state and heartbeat time of the agent's previous run.
node_ready() {
  local nodes
  nodes=$(pictl --json nodes list 2>/dev/null) || return 1
  /usr/bin/python3 -c '
import datetime, json, sys
nodes = json.load(sys.stdin).get("nodes", [])
if len(nodes) != 1 or nodes[0]["state"] != "NODE_STATE_READY" or "last_heartbeat" not in nodes[0]:
    sys.exit(1)
# RFC 3339 in UTC with up to nine fractional digits, more than datetime parses.
seconds, _, fraction = nodes[0]["last_heartbeat"].rstrip("Z").partition(".")
heartbeat = datetime.datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S").replace(
    tzinfo=datetime.timezone.utc).timestamp() + float("0." + (fraction or "0"))
if heartbeat <= float(sys.argv[1]):
    sys.exit(1)
print(nodes[0]["id"])' "$1" <<<"$nodes"
}

# Starts the agent and waits until its node is READY with a fresh heartbeat; sets node to its id.
start_agent_until_ready() {
  local started=$EPOCHREALTIME
  start_unit pi-agent
  if ! node=$(wait_for 30 node_ready "$started"); then
    pictl nodes list >&2 || true
    fail_logs "no READY node with a heartbeat since the agent started within 30 s"
  fi
  kill -0 "${runuser_pid[pi-agent]}" 2>/dev/null ||
    fail_logs "pi-agent exited after its node got READY"
  ok "pi-agent started from its unit as pi-agent ($1), node $node READY in $(since "$started")"
}

section_started=$EPOCHREALTIME
controller_config=/etc/pi-controller/controller.json
out=$(runuser -u pi-controller -- pi-controller --config "$controller_config" init 2>&1) ||
  fail_logs "pi-controller init: $out"
for path in /var/lib/pi-controller/{ca,controller}.{crt,key}; do
  [[ -f $path ]] || fail "pi-controller init did not make $path"
done
not_owned=$(find /var/lib/pi-controller -mindepth 1 ! -user pi-controller)
[[ -z $not_owned ]] || fail "not owned by pi-controller after init: $not_owned"
for path in /var/lib/pi-controller/*.key; do
  [[ $(stat -c %a "$path") == 600 ]] || fail "$path is mode $(stat -c %a "$path"), expected 600"
done
ok "pi-controller init as pi-controller: CA and controller certificate, keys 0600"

start_controller

install -d -o pi-controller -g pi-controller -m 0700 "$work/admin"
out=$(runuser -u pi-controller -- pi-controller --config "$controller_config" \
  issue-admin deb-smoke --out "$work/admin" 2>&1) || fail_logs "pi-controller issue-admin: $out"
export PICTL_CONFIG=$work/admin/config.json
ok "pi-controller issue-admin as pi-controller: pictl config for admin:deb-smoke"

tokens=$(pictl --json tokens create --ttl 1h --max-uses 1 --description deb-smoke-test) ||
  fail_logs "pictl tokens create"
/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$tokens" |
  install -m 0640 -g pi-agent /dev/stdin /etc/pi-agent/join-token || fail "storing the join token"
[[ $(grep -c '^PI_AGENT_OPTS=' /etc/default/pi-agent) == 1 ]] ||
  fail "/etc/default/pi-agent: expected one PI_AGENT_OPTS= line"
join_opts='--join 127.0.0.1:9090 --token-file /etc/pi-agent/join-token'
sed -i "s|^PI_AGENT_OPTS=.*|PI_AGENT_OPTS=\"$join_opts\"|" /etc/default/pi-agent
ok "pictl tokens create; token in /etc/pi-agent/join-token (root:pi-agent 640), PI_AGENT_OPTS set"

start_agent_until_ready "first join"
joined=$node
metrics=$(pictl --json metrics "$joined") || fail_logs "pictl metrics $joined"
/usr/bin/python3 -c 'import json, sys; assert json.load(sys.stdin)["cpu"]["count"] > 0' \
  <<<"$metrics" || fail_logs "pictl metrics $joined: no CPU count in $metrics"
ok "pictl metrics $joined"

stop_unit pi-agent
stop_unit pi-controller

# The unit keeps naming the token file: a joined agent must start without it.
rm /etc/pi-agent/join-token
start_controller
start_agent_until_ready "joined, token file deleted"
[[ $node == "$joined" ]] || fail_logs "the agent came back as node $node, not $joined"
pictl --json metrics "$node" >/dev/null || fail_logs "pictl metrics $node after the restart"
ok "pictl metrics $node after both restarted"
stop_unit pi-agent
stop_unit pi-controller
unset PICTL_CONFIG
# It holds the admin's private key.
rm -rf "$work"
ok "operator flow took $(since "$section_started")"

# 3. remove keeps state, configuration (with the operator's edits) and enablement
marker=/var/lib/pi-agent/smoke-marker
install -o pi-agent -g pi-agent -m 0600 /dev/null "$marker"
echo '# edited by the smoke test' >>/etc/default/pi-agent
edited=$(md5sum /etc/default/pi-agent)
dpkg -r "${packages[@]}" >/dev/null || fail "dpkg -r"
for package in "${packages[@]}"; do
  [[ $(installed "$package") == config-files ]] ||
    fail "$package is '$(installed "$package")' after dpkg -r, expected config-files"
done
for path in /usr/bin/pi-agent /usr/bin/pictl /lib/systemd/system/pi-agent.service; do
  [[ ! -e $path ]] || fail "$path still there after dpkg -r"
done
[[ -f $marker ]] || fail "$marker lost on dpkg -r"
for path in "${etc_files[@]}"; do
  [[ -f $path ]] || fail "conffile $path lost on dpkg -r"
done
[[ -d /var/lib/pi-controller ]] || fail "/var/lib/pi-controller lost on dpkg -r"
ok "dpkg -r: binaries and units gone; state directories, marker and conffiles kept"

# 4. reinstall
dpkg -i "$agent_deb" "$controller_deb" >/dev/null || fail "dpkg -i after dpkg -r"
[[ -f $marker ]] || fail "$marker lost on reinstall"
[[ $(md5sum /etc/default/pi-agent) == "$edited" ]] ||
  fail "the edit of /etc/default/pi-agent was lost on reinstall"
check_state_dir pi-agent
check_enabled pi-agent.service
check_enabled pi-controller.service
ok "reinstall: marker and edited conffile kept, units still enabled"

# 5. purge
dpkg -P "${packages[@]}" >/dev/null || fail "dpkg -P"
for package in "${packages[@]}"; do
  status=$(installed "$package" || true)
  [[ -z $status || $status == not-installed ]] || fail "$package is '$status' after dpkg -P"
done
for path in "${state_dirs[@]}" "${etc_files[@]}" /etc/pi-agent /etc/pi-controller /etc/pi-provision \
  "$wants/pi-agent.service" "$wants/pi-controller.service"; do
  [[ ! -e $path && ! -L $path ]] || fail "$path still there after dpkg -P"
done
for user in pi-agent pi-controller; do
  getent passwd "$user" >/dev/null || fail "system user $user removed on purge"
done
ok "dpkg -P: state directories, /etc files and enablement gone; system users kept"

trap - EXIT
echo "deb smoke test: PASS"
