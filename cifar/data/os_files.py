"""Files that operating systems and file managers leave in folders, and so in the archives made of them.

An archive made on a desktop carries them: macOS's resource forks (`__MACOSX/`, `._name`) and
folder settings (`.DS_Store`), Windows' thumbnail caches and folder settings (`Thumbs.db`,
`desktop.ini`) and bins, the thumbnail and settings files of Linux file managers (`.directory`,
`.thumbnails/`). They are not data: readers skip them, and every other hidden file or folder too.
"""

# Folder names at any depth, compared case-insensitively.
OS_FOLDERS = {"__macosx", "$recycle.bin", "recycler", "system volume information"}
# File names, compared case-insensitively ("Icon\r" is macOS's custom folder icon).
OS_FILES = {"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r"}


def is_os_file(name):
    """True for a member path ('a/b/c.png', folders ending in '/') that is such a file, or inside such a folder."""
    parts = [part for part in name.split("/") if part]
    if not parts:
        return False
    if any(part.startswith(".") or part.lower() in OS_FOLDERS for part in parts):  # hidden: .DS_Store, ._x, ...
        return True
    return not name.endswith("/") and parts[-1].lower() in OS_FILES
