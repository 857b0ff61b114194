#!/usr/bin/env bash
# Development and test PKI for Pi-Controller: a cluster CA and certificates whose subject common
# name is the identity (DESIGN 5.4): "controller", "admin:<name>", "node:<id>", "runner:<name>".
#
#   deploy/pki.sh init DIR
#       Creates DIR/ca.crt and DIR/ca.key (ECDSA P-256, 10 years) unless they exist.
#   deploy/pki.sh issue DIR FILE_NAME IDENTITY [--dns NAME]... [--ip ADDR]... [--days N]
#       Issues DIR/FILE_NAME.crt and DIR/FILE_NAME.key signed by DIR/ca.*. Certificates are valid
#       for both TLS server and client use; add --dns/--ip for every address a server is reached at.
#
# Keys are written with mode 0600. The control plane issues node certificates itself in
# production; this script is for development machines and tests.
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "pki.sh: $*" >&2
  exit 1
}

identity_ok() {
  [[ "$1" == controller ]] || [[ "$1" =~ ^(admin|node|runner):[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]]
}

cmd_init() {
  local dir=$1
  mkdir -p "$dir"
  if [[ -f "$dir/ca.crt" && -f "$dir/ca.key" ]]; then
    echo "pki.sh: CA already exists in $dir" >&2
    return 0
  fi
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$dir/ca.key" 2>/dev/null)
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 \
    -subj "/O=Pi-Controller/CN=Pi-Controller cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt"
  echo "pki.sh: created CA $dir/ca.crt" >&2
}

cmd_issue() {
  local dir=$1 name=$2 identity=$3
  shift 3
  local days=825 sans=()
  while (($#)); do
    case $1 in
      --dns) sans+=("DNS:$2"); shift 2 ;;
      --ip) sans+=("IP:$2"); shift 2 ;;
      --days) days=$2; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  identity_ok "$identity" ||
    die "identity '$identity' must be controller, admin:<name>, node:<id> or runner:<name>"
  [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "file name '$name' may only use [A-Za-z0-9._-]"
  [[ -f "$dir/ca.crt" && -f "$dir/ca.key" ]] || die "no CA in $dir (run: pki.sh init $dir)"

  local ext
  ext=$(mktemp)
  trap 'rm -f "$ext" "$dir/$name.csr"' RETURN
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    if ((${#sans[@]})); then
      (IFS=,; echo "subjectAltName=${sans[*]}")
    fi
  } >"$ext"
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$dir/$name.key" 2>/dev/null)
  openssl req -new -key "$dir/$name.key" -subj "/O=Pi-Controller/CN=$identity" \
    -out "$dir/$name.csr"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
  echo "pki.sh: issued $dir/$name.crt for $identity" >&2
}

(($# >= 1)) || usage
command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"
case $1 in
  init) (($# == 2)) || usage; cmd_init "$2" ;;
  issue) (($# >= 4)) || usage; shift; cmd_issue "$@" ;;
  *) usage ;;
esac
