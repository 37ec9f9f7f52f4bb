#!/usr/bin/env bash
# Make a local certificate authority and a server certificate for the broker's TLS listener.
#   bash deploy/make-broker-secrets.sh OUT_DIR [HOSTNAME ...]
# Writes OUT_DIR/ca.crt, ca.key, server.crt, server.key. Keep ca.key offline; never commit any of them.
set -euo pipefail
out=${1:?usage: make-broker-secrets.sh OUT_DIR [HOSTNAME ...]}
shift || true
names=("${@:-localhost}")
mkdir -p "$out"
umask 077
san="DNS:${names[0]}"
for n in "${names[@]:1}"; do san="$san,DNS:$n"; done
san="$san,IP:127.0.0.1"
openssl req -x509 -newkey rsa:3072 -sha256 -days 3650 -nodes -subj "/CN=Kinetic Chain local CA" \
  -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
openssl req -newkey rsa:3072 -sha256 -nodes -subj "/CN=${names[0]}" \
  -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > "$out/server.ext"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -days 825 -sha256 \
  -extfile "$out/server.ext" -out "$out/server.crt" 2>/dev/null
rm -f "$out/server.csr" "$out/server.ext" "$out/ca.srl"
chmod 644 "$out/ca.crt" "$out/server.crt"
echo "wrote $out/ca.crt, $out/server.crt, $out/server.key (and $out/ca.key: keep it offline)"
