#!/usr/bin/env bash
# Wrap the PyInstaller .app in a compressed disk image (macOS only: hdiutil).
#
#   packaging/macos/make_dmg.sh [APP]     APP defaults to dist/Hailstone.app
#
# Output: dist/hailstone-<version>-macos-<arch>.dmg, holding Hailstone.app and a
# link to /Applications (drag to install). The version is read from
# pyproject.toml. The app is ad-hoc signed by PyInstaller, not notarised: on
# first start macOS asks to confirm (right-click > Open), see packaging/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

app="${1:-dist/Hailstone.app}"
[ -d "$app" ] || {
	echo "make_dmg.sh: no $app (build with packaging/hailstone.spec first)" >&2
	exit 1
}
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] && python=.venv/bin/python
version="$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
arch="$(uname -m)"
dmg="dist/hailstone-$version-macos-$arch.dmg"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
ditto "$app" "$stage/$(basename "$app")" # keeps the bundle's symlinks and signatures
ln -s /Applications "$stage/Applications"
rm -f "$dmg"
hdiutil create -volname "Hailstone $version" -srcfolder "$stage" -fs HFS+ \
	-format UDZO -imagekey zlib-level=9 -ov "$dmg"
hdiutil verify "$dmg"
echo "built $dmg"
