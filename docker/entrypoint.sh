#!/bin/sh
# The image's entry point: put numba's baked cache where numba can use it, then exec the command
# (exec: the server becomes PID 1 and receives SIGTERM itself).
#
# numba skips a cache directory it cannot write to, as the baked one is on a read-only root
# filesystem: it then compiles every kernel again into another writable place, or fails at import
# when there is none. So the cache compiled at build time is copied to $NUMBA_CACHE_DIR, on a
# writable tmpfs (docker run --read-only --tmpfs /tmp, or an emptyDir in Kubernetes); its index
# matches the installed sources, so every kernel loads from it. lossd takes a NUMBA_CACHE_DIR the
# operator sets as it is (outside the image, it keys a directory by the kernel sources instead).
set -eu

baked=/opt/lossd/numba-cache
: "${NUMBA_CACHE_DIR:?NUMBA_CACHE_DIR must name a writable directory}"
if [ "${NUMBA_CACHE_DIR%/}" = "$baked" ]; then
    :  # the baked directory itself: used as it is where it is writable
elif ! mkdir -p "$NUMBA_CACHE_DIR" || ! cp -R "$baked/." "$NUMBA_CACHE_DIR/"; then
    echo "lossd: cannot copy numba's cache to $NUMBA_CACHE_DIR; it must be writable" \
        "(with a read-only root filesystem: --tmpfs /tmp, or an emptyDir at /tmp)" >&2
    exit 1
fi
exec "$@"
