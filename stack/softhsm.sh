#!/usr/bin/env bash
# Make the development PKCS#11 token (SoftHSM2) that holds keys which must not leave it.
#   stack/softhsm.sh        (idempotent: a second run changes nothing)
# Installs softhsm2 if missing, writes a SoftHSM config keeping its tokens under
# ${PRIVACAM_RUN_DIR:-<repo>/.run}/softhsm, and initializes the token "privacam-dev" with
# random SO and user PINs kept in <run dir>/secrets/softhsm-{so,user}.pin (mode 600).
# Prints the PKCS#11 module path on stdout; programs using the token need
#   SOFTHSM2_CONF=<run dir>/softhsm/softhsm2.conf
# Keys are made in the token with services.common.hsm (create_ec_key, create_aes_key).
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  "") ;;
  -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
  *) die "usage: stack/softhsm.sh (no arguments)" ;;
esac

TOKEN_LABEL=privacam-dev
MODULE=/usr/lib/softhsm/libsofthsm2.so
SOFTHSM_DIR="$RUN_DIR/softhsm"
export SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf"

mkdir -p "$SOFTHSM_DIR/tokens"
chmod 700 "$SOFTHSM_DIR" "$SOFTHSM_DIR/tokens"
# One run at a time (its own lock: up.sh holds $RUN_DIR/.lock while it runs).
exec 7>"$SOFTHSM_DIR/.lock"
flock 7

if ! command -v softhsm2-util >/dev/null || [ ! -e "$MODULE" ]; then
  log "apt: installing softhsm2"
  apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends softhsm2)
  # Refresh the package lists only when they are missing or the install fails.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || ! as_root "${apt[@]}" >&2; then
    log "apt: refreshing package lists and retrying"
    as_root apt-get update -q >&2
    as_root "${apt[@]}" >&2
  fi
fi
[ -e "$MODULE" ] || die "softhsm2 is installed but $MODULE is missing"

conf="directories.tokendir = $SOFTHSM_DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false"
if [ "$(cat "$SOFTHSM2_CONF" 2>/dev/null)" != "$conf" ]; then
  (umask 077 && printf '%s\n' "$conf" >"$SOFTHSM2_CONF.tmp" && mv "$SOFTHSM2_CONF.tmp" "$SOFTHSM2_CONF")
fi

token_exists() {
  softhsm2-util --show-slots | grep -Eq "^[[:space:]]*Label:[[:space:]]+${TOKEN_LABEL}[[:space:]]*$"
}

if token_exists; then
  [ -s "$RUN_DIR/secrets/softhsm-user.pin" ] ||
    die "token $TOKEN_LABEL exists but its PIN file $RUN_DIR/secrets/softhsm-user.pin is gone; remove $SOFTHSM_DIR to start over (its keys are lost)"
  log "softhsm: token $TOKEN_LABEL is ready ($SOFTHSM_DIR)"
else
  so_pin=$(secret softhsm-so.pin 16)
  user_pin=$(secret softhsm-user.pin 16)
  # The PINs are on softhsm2-util's command line for a moment (it has no other
  # non-interactive input); fine for a development token on one's own machine.
  softhsm2-util --init-token --free --label "$TOKEN_LABEL" --so-pin "$so_pin" --pin "$user_pin" >/dev/null
  token_exists || die "softhsm2-util did not create token $TOKEN_LABEL"
  log "softhsm: initialized token $TOKEN_LABEL in $SOFTHSM_DIR (PINs in $RUN_DIR/secrets/softhsm-*.pin)"
fi
log "softhsm: programs using the token need SOFTHSM2_CONF=$SOFTHSM2_CONF"
echo "$MODULE"
