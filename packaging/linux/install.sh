#!/bin/sh
# Install the unpacked Hailstone tarball for the current user (no root needed).
#
#   ./install.sh               copy this folder to ~/.local/opt/hailstone, link
#                              ~/.local/bin/hailstone, add the menu entry and icon
#   ./install.sh --in-place    keep the files where they are; only the link,
#                              the menu entry and the icon are added
#   ./install.sh --uninstall   remove what an install added (not your profile:
#                              ~/.local/share/hailstone holds your account keys)
#
# Honours XDG_DATA_HOME (menu entry, icon) and PREFIX (default ~/.local).
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
prefix="${PREFIX:-$HOME/.local}"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
target="$prefix/opt/hailstone"
bin_link="$prefix/bin/hailstone"
desktop_file="$data_home/applications/hailstone.desktop"
icon_file="$data_home/icons/hicolor/scalable/apps/hailstone.svg"

refresh_caches() {
	if command -v update-desktop-database >/dev/null 2>&1; then
		update-desktop-database -q "$data_home/applications" 2>/dev/null || true
	fi
	if command -v gtk-update-icon-cache >/dev/null 2>&1; then
		gtk-update-icon-cache -q -t "$data_home/icons/hicolor" 2>/dev/null || true
	fi
}

mode="copy"
case "${1:-}" in
"") ;;
--in-place) mode="in-place" ;;
--uninstall) mode="uninstall" ;;
-h | --help)
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "install.sh: unknown option $1 (try --help)" >&2
	exit 2
	;;
esac

if [ "$mode" = "uninstall" ]; then
	rm -f "$desktop_file" "$icon_file"
	if [ -L "$bin_link" ]; then rm -f "$bin_link"; fi
	if [ -x "$target/hailstone" ]; then rm -rf "$target"; fi
	refresh_caches
	echo "Hailstone removed (your profile in $data_home/hailstone was kept)."
	exit 0
fi

[ -x "$here/hailstone" ] || {
	echo "install.sh: run me from the unpacked Hailstone folder (no ./hailstone here)" >&2
	exit 1
}

if [ "$mode" = "copy" ] && [ "$here" != "$target" ]; then
	rm -rf "$target.new"
	mkdir -p "$prefix/opt"
	cp -R "$here" "$target.new"
	rm -rf "$target"
	mv "$target.new" "$target"
	home_dir="$target"
else
	home_dir="$here"
fi

mkdir -p "$prefix/bin" "$(dirname "$desktop_file")" "$(dirname "$icon_file")"
ln -sfn "$home_dir/hailstone" "$bin_link"
cp "$home_dir/hailstone.svg" "$icon_file"

# The menu entry runs the executable by its absolute path (~/.local/bin is not
# always on the desktop session's PATH), quoted as the desktop-entry spec says.
exe_quoted="\"$(printf '%s' "$home_dir/hailstone" | sed -e 's/[\\"`$]/\\&/g' -e 's/%/%%/g')\""
while IFS= read -r line; do
	case "$line" in
	Exec=*) printf 'Exec=%s\n' "$exe_quoted" ;;
	TryExec=*) printf 'TryExec=%s\n' "$home_dir/hailstone" ;;
	*) printf '%s\n' "$line" ;;
	esac
done <"$home_dir/hailstone.desktop" >"$desktop_file.tmp"
mv "$desktop_file.tmp" "$desktop_file"
chmod 0644 "$desktop_file"
refresh_caches

echo "Hailstone installed in $home_dir"
echo "  menu entry  $desktop_file"
echo "  command     $bin_link"
case ":$PATH:" in
*":$prefix/bin:"*) ;;
*) echo "  ($prefix/bin is not on your PATH; add it to run 'hailstone' from a terminal)" ;;
esac
