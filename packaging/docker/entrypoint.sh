#!/bin/sh
# Container entry point (packaging/docker/Dockerfile).
#
#   (no arguments) or node [ARGS]   run the node on the profile in $HAILSTONE_DATA;
#                                   on the first start, create the account when
#                                   HAILSTONE_USERNAME and a passphrase file are given
#   doctor|backup|restore|account|records [ARGS]
#                                   run that sub-command on the profile in $HAILSTONE_DATA
#                                   (unless ARGS has --data-dir)
#   verify|bench|gpu|... [ARGS]     run that sub-command
#
# Environment (defaults in brackets):
#   HAILSTONE_DATA [/data]                     the profile (a volume)
#   HAILSTONE_USERNAME                         first start only: the account to create
#   HAILSTONE_PASSPHRASE_FILE [/run/secrets/hailstone_passphrase]
#   HAILSTONE_BACKEND [cpu]                    cpu or gpu
#   HAILSTONE_PORT [4001]                      swarm port (TCP and QUIC), unless ARGS has --listen
#   HAILSTONE_METRICS                          e.g. 0.0.0.0:9464 (off when empty); publish it
#                                              as -p 127.0.0.1:9464:9464 to keep it private
#   HAILSTONE_LOG_FORMAT [json]                json or text
#   HAILSTONE_STATUS_FILE [/tmp/hailstone-status.json]   read by the HEALTHCHECK
#   HAILSTONE_PYTHON [/opt/hailstone/bin/python]
set -eu

py="${HAILSTONE_PYTHON:-/opt/hailstone/bin/python}"
data="${HAILSTONE_DATA:-/data}"
status="${HAILSTONE_STATUS_FILE:-/tmp/hailstone-status.json}"
passphrase_file="${HAILSTONE_PASSPHRASE_FILE:-/run/secrets/hailstone_passphrase}"
port="${HAILSTONE_PORT:-4001}"

case "${1:-node}" in
node) [ $# -gt 0 ] && shift ;;
-*) ;; # node options only
doctor | backup | restore | account | records)
	# These work on a profile: the container's, unless ARGS name another.
	for arg in "$@"; do
		case "$arg" in --data-dir | --data-dir=*) exec "$py" -m main "$@" ;; esac
	done
	exec "$py" -m main "$@" --data-dir "$data"
	;;
*) exec "$py" -m main "$@" ;;
esac

if [ ! -e "$data/account.key" ]; then
	if [ -n "${HAILSTONE_USERNAME:-}" ] && [ -r "$passphrase_file" ]; then
		echo "hailstone: first start: creating the account ${HAILSTONE_USERNAME} in $data" >&2
		"$py" -m main account create --data-dir "$data" --username "$HAILSTONE_USERNAME" \
			--passphrase-file "$passphrase_file" ${HAILSTONE_KDF_STRENGTH:+--kdf-strength "$HAILSTONE_KDF_STRENGTH"}
	else
		echo "hailstone: no account in $data. Either set HAILSTONE_USERNAME and mount a passphrase" >&2
		echo "file at $passphrase_file (a new account is created), or put a profile there:" >&2
		echo "  docker run --rm -v hailstone-data:/data -v \$PWD:/in IMAGE restore /in/BACKUP --data-dir /data" >&2
		exit 1
	fi
fi

# The swarm listens on every interface of the container unless ARGS names addresses.
listen_given=no
for arg in "$@"; do
	case "$arg" in --listen | --listen=*) listen_given=yes ;; esac
done
if [ "$listen_given" = no ]; then
	set -- --listen "/ip4/0.0.0.0/tcp/$port" --listen "/ip4/0.0.0.0/udp/$port/quic-v1" "$@"
fi
if [ -n "${HAILSTONE_METRICS:-}" ]; then
	set -- --metrics "$HAILSTONE_METRICS" "$@"
fi
if [ -r "$passphrase_file" ]; then
	# only read when this node key still needs the account's authorisation
	set -- --passphrase-file "$passphrase_file" "$@"
fi

# exec: the node is PID 1 and gets docker stop's SIGTERM itself.
exec "$py" -m main node --data-dir "$data" --status-file "$status" \
	--backend "${HAILSTONE_BACKEND:-cpu}" --log-format "${HAILSTONE_LOG_FORMAT:-json}" \
	--log-level "${HAILSTONE_LOG_LEVEL:-info}" "$@"
