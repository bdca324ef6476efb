#!/bin/sh
# Add Hearth to the desktop's application menu (for this user only; no root needed).
# Run it from the unpacked folder:  ./install-desktop-entry.sh        (--remove to undo)
# It writes ~/.local/share/applications/hearth.desktop, pointing at this folder's `hearth`,
# and the icon into ~/.local/share/icons/hicolor/256x256/apps/. Moving the folder later
# means running it again.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
entry="$data/applications/hearth.desktop"
icon="$data/icons/hicolor/256x256/apps/hearth.png"

if [ "${1:-}" = "--remove" ]; then
    rm -f "$entry" "$icon"
    echo "Removed $entry and $icon"
else
    mkdir -p "$(dirname "$entry")" "$(dirname "$icon")"
    cp "$here/hearth.png" "$icon"
    # Exec and TryExec get this folder's absolute path (quoted: it may contain spaces).
    sed -e "s|^Exec=hearth|Exec=\"$here/hearth\"|" -e "s|^TryExec=hearth|TryExec=$here/hearth|" \
        "$here/hearth.desktop" > "$entry"
    chmod 644 "$entry"
    echo "Installed $entry"
fi
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$data/applications" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
