#!/bin/sh
# file_sink_disk.sh: run the file sink's disk-failure cases (full tmpfs, read-only remount)
# in a private mount namespace, so the mounts vanish with it and need no host privileges.
# Usage: file_sink_disk.sh PATH/TO/file_sink_disk
# Exit 77 (ctest SKIP_RETURN_CODE) only when this machine does not permit `unshare -m`.
set -u
prog="$1"
if unshare -m -r true 2>/dev/null; then
    ns="unshare -m -r"          # unprivileged: user namespace root
elif unshare -m true 2>/dev/null; then
    ns="unshare -m"             # already root
else
    echo "SKIP: unshare -m is not permitted here (no user namespaces, not root)"
    exit 77
fi
work=$(mktemp -d /tmp/file_sink_disk.XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
# --propagation private: our mounts never reach the host's namespace
$ns --propagation private timeout 120 "$prog" "$work"
rc=$?
exit $rc
