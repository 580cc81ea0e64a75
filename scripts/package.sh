#!/usr/bin/env bash
# Build the Linux release of Hailstone and smoke-test it.
#
#   scripts/package.sh              set up .venv (package and gpu extras), build with
#                                   PyInstaller, make dist/hailstone-<version>-linux-<arch>.tar.gz,
#                                   unpack it and run packaging/smoke_test.sh on it
#   scripts/package.sh --no-smoke   build and pack only
#   scripts/package.sh --smoke-only test the tarball an earlier run made
#
# The build bundles the GPU backend (CuPy and NVRTC, the `gpu` extra) on x86_64 and
# aarch64, the architectures CuPy's wheels cover. HAILSTONE_FREEZE_GPU=0 makes a
# CPU-only build (and tells the smoke test not to expect CuPy); other architectures
# get one by default.
#
# The version comes from pyproject.toml. Timings and sizes are printed at the end
# ("MEASURE name value" lines).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

build=1
smoke=1
case "${1:-}" in
"") ;;
--no-smoke) smoke=0 ;;
--smoke-only) build=0 ;;
*)
	echo "usage: scripts/package.sh [--no-smoke | --smoke-only]" >&2
	exit 2
	;;
esac
[ "$(uname -s)" = Linux ] || {
	echo "scripts/package.sh builds the Linux tarball; see packaging/README.md for Windows and macOS." >&2
	exit 1
}

case "$(uname -m)" in
x86_64 | aarch64) : "${HAILSTONE_FREEZE_GPU:=1}" ;;
*) : "${HAILSTONE_FREEZE_GPU:=0}" ;;
esac
export HAILSTONE_FREEZE_GPU # read by packaging/hailstone.spec and packaging/smoke_test.sh
if [ "$HAILSTONE_FREEZE_GPU" = 0 ]; then
	scripts/setup.sh package
else
	scripts/setup.sh package,gpu
fi
py=.venv/bin/python
version="$("$py" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
arch="$(uname -m)"
name="hailstone-$version-linux-$arch"
tarball="dist/$name.tar.gz"

if [ "$build" = 1 ]; then
	if command -v desktop-file-validate >/dev/null 2>&1; then
		desktop-file-validate packaging/linux/hailstone.desktop
	fi
	rm -rf dist/hailstone "dist/$name" "$tarball" build/pyinstaller
	start=$(date +%s)
	QT_QPA_PLATFORM=offscreen .venv/bin/pyinstaller --noconfirm --clean --log-level WARN \
		--distpath dist --workpath build/pyinstaller packaging/hailstone.spec
	build_s=$(($(date +%s) - start))

	# The tarball: the one-folder build plus the menu entry, its icon and install.sh.
	cp -R dist/hailstone "dist/$name"
	cp packaging/linux/hailstone.desktop packaging/linux/install.sh "dist/$name/"
	cp resources/icons/hailstone.svg "dist/$name/hailstone.svg"
	chmod 0755 "dist/$name/install.sh" "dist/$name/hailstone"
	tar -C dist --owner=0 --group=0 --numeric-owner -czf "$tarball" "$name"
	rm -rf "dist/$name"
	echo "MEASURE build_seconds $build_s"
	echo "MEASURE unpacked_bytes $(du -sb dist/hailstone | cut -f1)"
	echo "MEASURE tarball_bytes $(stat -c %s "$tarball")"
	echo "built $tarball"
fi

if [ "$smoke" = 1 ]; then
	[ -f "$tarball" ] || {
		echo "no $tarball: build first" >&2
		exit 1
	}
	unpack="$(mktemp -d "${TMPDIR:-/tmp}/hailstone-unpack.XXXXXX")"
	trap 'rm -rf "$unpack"' EXIT
	tar -C "$unpack" -xzf "$tarball"
	# The unpacked tarball must hold everything the menu entry needs.
	for f in hailstone hailstone.desktop hailstone.svg install.sh; do
		[ -e "$unpack/$name/$f" ] || {
			echo "smoke: FAIL: $f missing from $tarball" >&2
			exit 1
		}
	done
	# install.sh into a throw-away home: menu entry with an absolute Exec, icon, link.
	fake_home="$unpack/home"
	mkdir -p "$fake_home"
	HOME="$fake_home" XDG_DATA_HOME="$fake_home/.local/share" PREFIX="$fake_home/.local" \
		"$unpack/$name/install.sh" >/dev/null
	installed="$fake_home/.local/opt/hailstone"
	grep -qx "Exec=\"$installed/hailstone\"" "$fake_home/.local/share/applications/hailstone.desktop" || {
		echo "smoke: FAIL: install.sh wrote a wrong Exec line" >&2
		exit 1
	}
	if command -v desktop-file-validate >/dev/null 2>&1; then
		desktop-file-validate "$fake_home/.local/share/applications/hailstone.desktop"
	fi
	[ -x "$fake_home/.local/bin/hailstone" ] && [ -f "$fake_home/.local/share/icons/hicolor/scalable/apps/hailstone.svg" ] || {
		echo "smoke: FAIL: install.sh did not link the command or copy the icon" >&2
		exit 1
	}
	"$fake_home/.local/bin/hailstone" --help >/dev/null
	HOME="$fake_home" XDG_DATA_HOME="$fake_home/.local/share" PREFIX="$fake_home/.local" \
		"$installed/install.sh" --uninstall >/dev/null
	[ ! -e "$installed" ] && [ ! -e "$fake_home/.local/share/applications/hailstone.desktop" ] || {
		echo "smoke: FAIL: install.sh --uninstall left files behind" >&2
		exit 1
	}
	echo "smoke: ok: install.sh installs and uninstalls (menu entry, icon, ~/.local/bin link)"
	packaging/smoke_test.sh "$unpack/$name" "$repo/.venv/bin/python"
fi
