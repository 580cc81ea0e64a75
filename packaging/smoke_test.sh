#!/usr/bin/env bash
# Smoke test of a FROZEN Hailstone build (not the source tree).
#
#   packaging/smoke_test.sh DIR [PYTHON]
#
# DIR is the unpacked one-folder build (it holds the `hailstone` executable, or
# hailstone-cli.exe + hailstone.exe on Windows under Git Bash). PYTHON, when
# given (default: .venv/bin/python when present), runs main.py from source so
# the frozen `verify` output can be compared with it; pass "-" to skip that.
#
# Every run uses a throw-away cache, profile and home folder, on the offscreen
# Qt platform. Checks:
#   1. `hailstone --help` lists the sub-commands (and how long a cold start takes)
#   2. `hailstone verify 2**71 --count 2**24 --json` gives one JSON object whose
#      root (and every field but the timings) equals the source run's; a second
#      run loads the numba cache (and is timed)
#   3. `hailstone verify 27 --json`: 27 reaches 9232
#   4. `hailstone verify 0` fails with status 2 and one line on stderr
#   5. the GPU backend: `hailstone gpu --json` must show CuPy loaded from the
#      bundle and NVRTC compiling the kernel (Linux, Windows), or CuPy absent
#      (macOS, or a build made with HAILSTONE_FREEZE_GPU=0; set the same
#      variable here for such a build). Without a GPU, `verify 27 --backend
#      gpu` fails with status 2 and one "hailstone: no GPU: ..." line; with
#      one, it and the 2^24 range of step 2 must match the CPU results
#   6. `hailstone account --help`; `account create` on a temporary profile
#   7. `hailstone node` on that profile (dev params, loopback, no bootstrap)
#      starts the embedded kubo node (libkubo from the bundle) and writes a status
#      file with a peer id; its /metrics answers, `doctor --health` passes and
#      `backup` works beside it; SIGTERM stops it cleanly; the backup restores
#      [skipped where the build has no libkubo: macOS]
#   8. the GUI: `hailstone screenshots` runs the real app offscreen (demo
#      profile, two embedded IPFS nodes on loopback) and must save every PNG
#   9. the GUI entry itself: `hailstone gui --data-dir TMP --params dev` stays
#      up for 8 s without crashing and is then stopped
#  10. the same on X11 through the bundled xcb plugin, where Xvfb is installed
# Timings go to stdout as "TIME name seconds" lines (packaging/README.md).
set -euo pipefail

dir="${1:?usage: smoke_test.sh DIR [PYTHON|-]}"
dir="$(cd "$dir" && pwd)"
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${2:-}"
if [ -z "$python" ] && [ -x "$repo/.venv/bin/python" ]; then
	python="$repo/.venv/bin/python"
fi
case "$python" in
*/*) [ "${python#/}" != "$python" ] || [ "${python#?:}" != "$python" ] || python="$(pwd)/$python" ;;
esac

windows=0
case "$(uname -s)" in
MINGW* | MSYS* | CYGWIN*)
	windows=1
	exe="$dir/hailstone-cli.exe"
	gui_exe="$dir/hailstone.exe"
	;;
*)
	exe="$dir/hailstone"
	gui_exe="$dir/hailstone"
	;;
esac
[ -x "$exe" ] || {
	echo "smoke: no executable at $exe" >&2
	exit 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/hailstone-smoke.XXXXXX")"
if [ "$windows" = 1 ]; then
	# Native Windows programs get C:/... paths, and no MSYS rewriting of the
	# /ip4/... multiaddrs into file names.
	work="$(cygpath -m "$work")"
	dir="$(cygpath -m "$dir")"
	exe="$(cygpath -m "$exe")"
	gui_exe="$(cygpath -m "$gui_exe")"
	export MSYS_NO_PATHCONV=1 MSYS2_ARG_CONV_EXCL="*"
fi
pids=()
cleanup() {
	for pid in ${pids[@]+"${pids[@]}"}; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# A throw-away environment: nothing of the user's profile, cache or config is used.
export HOME="$work/home"
export XDG_CACHE_HOME="$work/home/.cache"
export XDG_CONFIG_HOME="$work/home/.config"
export XDG_DATA_HOME="$work/home/.local/share"
export HAILSTONE_CACHE_DIR="$work/cache"
export QT_QPA_PLATFORM=offscreen
# Temporary folders of the app (the screenshot demo's profile, kubo's) go away with $work.
export TMPDIR="$work/tmp" TMP="$work/tmp" TEMP="$work/tmp"
unset DISPLAY WAYLAND_DISPLAY NUMBA_CACHE_DIR NUMBA_CACHE_LOCATOR_CLASSES
mkdir -p "$HOME" "$XDG_CACHE_HOME" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$TMPDIR"
cd "$work" # libkubo and friends must not need the build folder as working directory

fail() {
	echo "smoke: FAIL: $*" >&2
	exit 1
}
ok() { echo "smoke: ok: $*"; }
# Seconds with a fraction: bash 5's EPOCHREALTIME, else perl (macOS's bash 3.2).
now() {
	if [ -n "${EPOCHREALTIME:-}" ]; then
		echo "${EPOCHREALTIME/,/.}"
	else
		perl -MTime::HiRes=time -e 'printf "%.3f\n", time'
	fi
}
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# 1. --help (cold start of the frozen interpreter)
t=$(now)
"$exe" --help >"$work/help.txt" 2>&1 || fail "--help exited with $?"
echo "TIME help_cold $(elapsed "$t")"
t=$(now)
"$exe" --help >/dev/null 2>&1
echo "TIME help_warm $(elapsed "$t")"
for cmd in verify bench account records node gui screenshots; do
	grep -q "$cmd" "$work/help.txt" || fail "--help does not list '$cmd'"
done
ok "--help lists every sub-command"

# 2. verify 2^24 integers at 2^71 (part of one production block): frozen == source
range=("2**71" --count "2**24" --cores 2 --json)
t=$(now)
"$exe" verify "${range[@]}" >"$work/verify1.json" 2>"$work/verify1.err" ||
	fail "verify exited with $?: $(cat "$work/verify1.err")"
echo "TIME verify_cold $(elapsed "$t")"
t=$(now)
"$exe" verify "${range[@]}" >"$work/verify2.json" 2>"$work/verify2.err" ||
	fail "verify (second run) exited with $?"
echo "TIME verify_warm $(elapsed "$t")"
[ -n "$(find "$HAILSTONE_CACHE_DIR/numba" -name '*.nbi' 2>/dev/null)" ] ||
	fail "no numba cache index under $HAILSTONE_CACHE_DIR/numba"
ok "numba cache written to \$HAILSTONE_CACHE_DIR/numba"
if [ -n "$python" ] && [ "$python" != "-" ]; then
	(cd "$repo" && HAILSTONE_CACHE_DIR="$work/cache-src" "$python" main.py verify "${range[@]}") \
		>"$work/verify-src.json" || fail "verify from source exited with $?"
	src_py="$python"
else
	src_py=""
fi
# Compare with whatever Python is at hand (the frozen app has none to offer).
cmp_py="${src_py:-$(command -v python3 || command -v python || true)}"
[ -n "$cmp_py" ] || fail "no python to read the JSON"
"$cmp_py" - "$work" <<'EOF' || fail "verify output differs"
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
runs = [json.loads((work / f).read_text()) for f in ("verify1.json", "verify2.json")]
src = work / "verify-src.json"
if src.is_file():
    runs.append(json.loads(src.read_text()))
timing = {"seconds", "numbers_per_second"}
strip = [{k: v for k, v in r.items() if k not in timing} for r in runs]
assert all(s == strip[0] for s in strip), strip
assert strip[0]["tested"] > 0 and len(strip[0]["root"]) == 64, strip[0]
print("smoke: verify root", strip[0]["root"], f"({len(runs)} runs agree)")
EOF
ok "verify JSON identical to the source run's"

# 3. a known trajectory
"$exe" verify 27 --json >"$work/v27.json" || fail "verify 27 exited with $?"
grep -q '"max_value": "9232"' "$work/v27.json" || fail "verify 27: $(cat "$work/v27.json")"
ok "verify 27 reaches 9232"

# 4. the CLI contract for bad arguments
set +e
"$exe" verify 0 >"$work/bad.out" 2>"$work/bad.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "verify 0 exited with $rc, not 2"
[ "$(wc -l <"$work/bad.err")" -eq 1 ] || fail "verify 0 stderr: $(cat "$work/bad.err")"
ok "bad arguments: status 2, one line on stderr"

# 5. the GPU backend (CuPy + NVRTC from the bundle; none on macOS)
case "${HAILSTONE_FREEZE_GPU:-}" in
0) expect_gpu=0 ;;
"")
	case "$(uname -s)/$(uname -m)" in
	Linux/x86_64 | Linux/aarch64 | MINGW*/* | MSYS*/* | CYGWIN*/*) expect_gpu=1 ;;
	*) expect_gpu=0 ;;
	esac
	;;
*) expect_gpu=1 ;;
esac
t=$(now)
set +e
"$exe" gpu --json >"$work/gpu.json" 2>"$work/gpu.err"
gpu_rc=$?
set -e
echo "TIME gpu_probe $(elapsed "$t")"
if [ -n "$src_py" ] && [ "$expect_gpu" = 1 ]; then
	(cd "$repo" && HAILSTONE_CACHE_DIR="$work/cache-src" "$python" main.py gpu --json) \
		>"$work/gpu-src.json" 2>/dev/null || true
fi
"$cmp_py" - "$work" "$expect_gpu" "$gpu_rc" <<'EOF' || fail "gpu --json: $(cat "$work/gpu.json" "$work/gpu.err")"
import json, sys
from pathlib import Path
work, expect, rc = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
out = json.loads((work / "gpu.json").read_text())
keys = {"available", "reason", "driver_version", "runtime_version", "devices",
        "kernel_compiles", "compile_options", "compiler"}
assert set(out) == keys, sorted(out)
assert rc == (0 if out["available"] else 1), f"exit status {rc}"
assert "Traceback" not in (work / "gpu.err").read_text()
if expect:
    # CuPy loaded from the bundle, and NVRTC (found by cuda.pathfinder) compiled the kernel.
    assert not out["reason"].startswith("CuPy is not installed"), out["reason"]
    assert out["runtime_version"] > 0, out
    assert out["kernel_compiles"] is True and out["compile_options"], out["compiler"]
    assert out["compiler"].startswith("NVRTC "), out["compiler"]
    src = work / "gpu-src.json"
    if src.is_file() and src.stat().st_size:
        assert json.loads(src.read_text()) == out, "differs from the source run's"
else:
    assert out["reason"].startswith("CuPy is not installed"), out["reason"]
    assert out["kernel_compiles"] is False, out
usable = "usable" if out["available"] else f"not usable ({out['reason']})"
print(f"smoke: gpu: {usable}; kernel compiles: {out['kernel_compiles']} ({out['compiler'][:60]})")
EOF
set +e
"$exe" verify 27 --backend gpu --json >"$work/v27-gpu.json" 2>"$work/v27-gpu.err"
rc=$?
set -e
if grep -q '"available": true' "$work/gpu.json"; then
	[ "$rc" = 0 ] || fail "verify 27 --backend gpu exited with $rc: $(cat "$work/v27-gpu.err")"
	grep -q '"max_value": "9232"' "$work/v27-gpu.json" || fail "verify 27 on the GPU: $(cat "$work/v27-gpu.json")"
	t=$(now)
	"$exe" verify "${range[@]}" --backend gpu >"$work/verify-gpu.json" 2>"$work/verify-gpu.err" ||
		fail "verify --backend gpu exited with $?: $(cat "$work/verify-gpu.err")"
	echo "TIME verify_gpu $(elapsed "$t")"
	"$cmp_py" - "$work" <<'EOF' || fail "the GPU result differs from the CPU's"
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
cpu = json.loads((work / "verify1.json").read_text())
gpu = json.loads((work / "verify-gpu.json").read_text())
same = ("start", "end", "tested", "odd_steps", "max_value", "max_n", "overflows", "candidates", "root")
assert all(cpu[k] == gpu[k] for k in same), (cpu, gpu)
EOF
	ok "GPU backend: the GPU computes, and its results equal the CPU's"
else
	[ "$rc" = 2 ] || fail "verify 27 --backend gpu without a usable GPU exited with $rc, not 2"
	[ "$(wc -l <"$work/v27-gpu.err")" -eq 1 ] && grep -q '^hailstone: no GPU: ' "$work/v27-gpu.err" ||
		fail "verify 27 --backend gpu stderr: $(cat "$work/v27-gpu.err")"
	if [ "$expect_gpu" = 1 ]; then
		ok "GPU backend bundled (CuPy loads, NVRTC compiles the kernel); no GPU here: status 2, one line"
	else
		ok "no GPU backend in this build; --backend gpu: status 2, one line"
	fi
fi

# 6. accounts (PyNaCl, Argon2id, cbor2)
"$exe" account --help >"$work/account-help.txt" || fail "account --help exited with $?"
grep -q create "$work/account-help.txt" || fail "account --help does not list 'create'"
printf 'frozen smoke test passphrase\n' >"$work/passphrase"
"$exe" account create --data-dir "$work/profile" --username smoke-test \
	--passphrase-file "$work/passphrase" --kdf-strength min >"$work/account.txt" ||
	fail "account create exited with $?"
grep -q "username smoke-test" "$work/account.txt" || fail "account create: $(cat "$work/account.txt")"
"$exe" account show --data-dir "$work/profile" >/dev/null || fail "account show exited with $?"
ok "account create/show"

# 7. the headless node on the embedded kubo library
have_kubo=1
[ -n "$(find "$dir" -name 'libkubo_*' \( -name '*.so' -o -name '*.dll' \) -print -quit)" ] || have_kubo=0
if [ "$have_kubo" = 1 ]; then
	t=$(now)
	"$exe" node --data-dir "$work/profile" --params dev --no-bootstrap \
		--listen /ip4/127.0.0.1/tcp/0 --status-file "$work/status.json" --unit-limit 2 \
		--cores 1 --metrics 127.0.0.1:0 --log-format json >"$work/node.out" 2>"$work/node.err" &
	node_pid=$!
	pids+=("$node_pid")
	for _ in $(seq 120); do
		[ -s "$work/status.json" ] && break
		kill -0 "$node_pid" 2>/dev/null || fail "node exited early: $(cat "$work/node.err")"
		sleep 0.5
	done
	[ -s "$work/status.json" ] || fail "node wrote no status file in 60 s: $(cat "$work/node.err")"
	echo "TIME node_status $(elapsed "$t")"
	grep -q '"peer_id": "Qm\|"peer_id": "12D3' "$work/status.json" ||
		fail "node status has no peer id: $(cat "$work/status.json")"
	# prometheus_client in the bundle: the node's /metrics answers
	"$cmp_py" - "$work/node.err" <<'EOF' || fail "metrics: $(cat "$work/node.err")"
import re, sys, urllib.request
url = re.search(r"hailstone metrics on (http://\S+)", open(sys.argv[1]).read()).group(1)
text = urllib.request.urlopen(url, timeout=30).read().decode()
assert 'hailstone_info{backend="cpu",params="dev"' in text, text[:500]
EOF
	"$exe" doctor --health --status-file "$work/status.json" >"$work/health.txt" ||
		fail "doctor --health exited with $?: $(cat "$work/health.txt")"
	"$exe" backup --data-dir "$work/profile" --out "$work/backup.tgz" >"$work/backup.txt" ||
		fail "backup beside the running node exited with $?"
	kill -TERM "$node_pid"
	for _ in $(seq 60); do
		kill -0 "$node_pid" 2>/dev/null || break
		sleep 0.5
	done
	if kill -0 "$node_pid" 2>/dev/null; then
		fail "node still running 30 s after SIGTERM"
	fi
	set +e
	wait "$node_pid"
	rc=$?
	set -e
	# Windows has no SIGTERM for a native process (Git Bash's kill terminates it).
	[ "$rc" = 0 ] || [ "$windows" = 1 ] ||
		fail "node exited with $rc after SIGTERM: $(tail -5 "$work/node.err")"
	[ -f "$work/profile/ipfs/kubo.log" ] || fail "kubo.log is not in the node's repo"
	[ -s "$work/profile/logs/node.log" ] || fail "the node wrote no logs/node.log"
	"$exe" restore "$work/backup.tgz" --data-dir "$work/restored" >"$work/restore.txt" ||
		fail "restore exited with $?"
	"$exe" account show --data-dir "$work/restored" >"$work/restored.txt" ||
		fail "account show on the restored profile exited with $?"
	grep -q smoke-test "$work/restored.txt" || fail "the restored profile: $(cat "$work/restored.txt")"
	ok "embedded kubo node started from the bundle and stopped on SIGTERM; metrics, health, backup, restore"
else
	echo "smoke: skip: no libkubo in this build (node test)"
fi

# 8. the GUI, for real: the screenshot demo (offscreen, dev params, two IPFS nodes)
if [ "$have_kubo" = 1 ]; then
	t=$(now)
	"$exe" screenshots --out "$work/shots" --seconds 3 >"$work/shots.out" 2>&1 ||
		fail "screenshots exited with $?: $(tail -20 "$work/shots.out")"
	echo "TIME screenshots $(elapsed "$t")"
	n=$(find "$work/shots" -name '*.png' -size +1k | wc -l)
	for page in page-dashboard page-network wizard-1-account tray-menu; do
		[ -s "$work/shots/$page.png" ] || fail "screenshot $page.png missing"
	done
	[ "$n" -ge 10 ] || fail "only $n screenshots"
	ok "GUI screenshots: $n PNG files"
else
	echo "smoke: skip: screenshots need the embedded IPFS node"
fi

# Start the GUI on a dev profile, check it is still up after 8 s, then stop it.
#   gui_for_8s PROFILE_DIR OUTPUT_FILE WHAT   (environment: QT_QPA_PLATFORM, DISPLAY)
gui_for_8s() {
	"$gui_exe" gui --data-dir "$1" --params dev >"$2" 2>&1 &
	local pid=$!
	pids+=("$pid")
	sleep 8
	kill -0 "$pid" 2>/dev/null || fail "$3 exited within 8 s: $(tail -20 "$2")"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 20); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# 9. the GUI entry point (what the .desktop file starts) stays up
gui_for_8s "$work/gui-profile" "$work/gui.out" "GUI"
[ -f "$work/gui-profile/logs/hailstone.log" ] || fail "the GUI wrote no log in its profile"
if grep -q "Traceback" "$work/gui-profile/logs/hailstone.log"; then
	fail "the GUI logged a traceback: $(grep -A20 Traceback "$work/gui-profile/logs/hailstone.log" | head -40)"
fi
ok "GUI ran 8 s on the offscreen platform without an error"

# 10. the X11 (xcb) platform plugin, where an X server can be started (Linux + Xvfb)
if [ "$windows" = 0 ] && [ "$(uname -s)" = Linux ] && command -v Xvfb >/dev/null 2>&1; then
	display_num=$((90 + RANDOM % 100))
	Xvfb ":$display_num" -screen 0 1280x800x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
	xvfb_pid=$!
	pids+=("$xvfb_pid")
	sleep 2
	DISPLAY=":$display_num" QT_QPA_PLATFORM=xcb gui_for_8s "$work/x11-profile" "$work/x11.out" \
		"GUI on X11"
	kill -TERM "$xvfb_pid" 2>/dev/null || true
	if grep -qi "could not load the Qt platform plugin\|Traceback" "$work/x11.out" \
		"$work/x11-profile/logs/hailstone.log"; then
		fail "GUI on X11: $(cat "$work/x11.out")"
	fi
	ok "GUI ran 8 s on X11 (Xvfb, xcb plugin)"
else
	echo "smoke: skip: no Xvfb (X11 test)"
fi

echo "smoke: PASS ($dir)"
