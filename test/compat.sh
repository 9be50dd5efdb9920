#!/bin/bash
# Builds outbox against another PostgreSQL major version and runs its tests
# there (pg_regress, the isolation specs and, unless --quick, the TAP tests),
# without touching the machine's own PostgreSQL.  Run as root on Debian 12;
# installs what it needs itself and caches what it builds.
#
#   test/compat.sh [--quick] 17         Debian's PostgreSQL 17 (trixie), in a
#                                       trixie chroot made with debootstrap
#   test/compat.sh [--quick] 15         the same for bookworm's PostgreSQL 15
#   test/compat.sh [--quick] --src SRC  a PostgreSQL source tree or release
#                                       tarball (any version, e.g. 14 or 16):
#                                       built with --enable-cassert into a
#                                       private prefix, then used as above
#
# The tests run as OUTBOX_COMPAT_USER (default postgres; made if missing),
# since initdb refuses root: another user keeps them clear of anything that
# stops the postgres user's processes on a shared machine.
# OUTBOX_COMPAT_CACHE (default /var/cache/outbox-compat) holds the chroots,
# the PostgreSQL builds and the copies of this tree that are tested; delete a
# subdirectory to have it made again.  The tree tested is the work tree's
# tracked files, uncommitted changes included.  The last line counts passed
# and failed tests.
set -euo pipefail
cd "$(dirname "$0")/.."
SRCDIR=$(pwd)

CACHE=${OUTBOX_COMPAT_CACHE:-/var/cache/outbox-compat}
MIRROR=${OUTBOX_COMPAT_MIRROR:-http://deb.debian.org/debian}
TESTUSER=${OUTBOX_COMPAT_USER:-postgres}
WERROR='-Wall -Wextra -Wno-unused-parameter -Werror'
TAP_PACKAGES="kcat libipc-run-perl python3 python3-kafka python3-confluent-kafka python3-psycopg2
    json-schema-test-suite chromium"

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

quick=""
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
[ $# -ge 1 ] || usage

if [ "$(id -u)" != 0 ]; then
    echo "run this as root: it installs packages, makes a chroot and runs PostgreSQL as postgres" >&2
    exit 1
fi
mkdir -p "$CACHE"

apt_install() {     # apt_install [chroot-dir] packages...: those not installed yet
    local root=$1; shift
    local run=() missing=""
    [ -n "$root" ] && run=(chroot "$root")
    for p in "$@"; do
        "${run[@]}" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "== installing${root:+ in $root}:$missing"
    "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${run[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# A copy of this tree's tracked files (with uncommitted changes) in $1; the
# test user comes to own it, as it writes the results there.
copy_tree() {
    rm -rf "$1"
    mkdir -p "$1"
    git -C "$SRCDIR" ls-files -z | tar -C "$SRCDIR" --null -T - -c | tar -C "$1" -x
}

npm_install() {    # npm_install [chroot-dir] tree: Node.js if missing, then the websocket example's packages
    local run=()
    [ -n "$1" ] && run=(chroot "$1")
    "${run[@]}" sh -c 'command -v node >/dev/null && command -v npm >/dev/null' ||
        apt_install "$1" nodejs npm
    # a chroot trusts what the machine trusts (a TLS-inspecting proxy's CA, say)
    if [ -n "$1" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        cp /etc/ssl/certs/ca-certificates.crt "$1/etc/outbox-host-ca.crt"
        "${run[@]}" sh -c "cd '$2/examples/websocket' && NODE_EXTRA_CA_CERTS=/etc/outbox-host-ca.crt \
            npm install --cafile=/etc/outbox-host-ca.crt --no-audit --no-fund --loglevel=error >/dev/null"
    else
        "${run[@]}" sh -c "cd '$2/examples/websocket' && npm install --no-audit --no-fund --loglevel=error >/dev/null"
    fi
}

make_user() {      # make_user [chroot-dir]: the test user, unless it exists
    local run=()
    [ -n "$1" ] && run=(chroot "$1")
    "${run[@]}" id "$TESTUSER" >/dev/null 2>&1 ||
        "${run[@]}" useradd --system --user-group --create-home --shell /bin/bash "$TESTUSER"
}

# Counts and prints the results of an installcheck whose output is in $1 and
# whose TAP logs are under $2/tmp_check/log; returns non-zero on any failure.
summarize() {
    local out=$1 dir=$2 passed failed p f
    # pg_regress prints "ok 1 - name" from 16 on, "test name ... ok" before
    passed=$(grep -cE '^(ok|test) .* ok( |$)|^ok [0-9]+ ' "$out" || true)
    failed=$(grep -cE '(\.\.\. |^not ok .*)FAILED|^not ok ' "$out" || true)
    [ -f "$dir/regression.diffs" ] && cat "$dir/regression.diffs"
    [ -f "$dir/output_iso/regression.diffs" ] && cat "$dir/output_iso/regression.diffs"
    if [ -z "$quick" ]; then
        for log in "$dir"/tmp_check/log/regress_log_*; do
            [ -f "$log" ] || continue
            p=$(grep -cE '^\[[0-9:.]+\]\([0-9.]+s\) ok [0-9]+' "$log" || true)
            f=$(grep -cE '^\[[0-9:.]+\]\([0-9.]+s\) not ok [0-9]+' "$log" || true)
            passed=$((passed + p)); failed=$((failed + f))
        done
    fi
    # a suite that stopped early (build error, a TAP script dying before its
    # plan) counts as a failure even when no single test said "not ok"
    if [ "$3" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
    echo "== $4"
    echo "compat: $passed passed, $failed failed"
    [ "$failed" = 0 ]
}

# --- Debian's packages of a major version, in a chroot of the release that has it
run_chroot() {
    local major=$1 suite
    case $major in
        15) suite=bookworm ;;
        17) suite=trixie ;;
        *) echo "no Debian release known to ship PostgreSQL $major: use --src" >&2; exit 2 ;;
    esac
    local root=$CACHE/$suite
    apt_install "" debootstrap
    if [ ! -f "$root/.outbox-ready" ]; then
        rm -rf "$root"
        echo "== debootstrap $suite into $root (a few minutes)"
        debootstrap --variant=minbase "$suite" "$root" "$MIRROR" >"$CACHE/debootstrap-$suite.log" 2>&1 ||
            { tail -20 "$CACHE/debootstrap-$suite.log" >&2; exit 1; }
        # no service starts in the chroot: the tests make their own clusters
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod +x "$root/usr/sbin/policy-rc.d"
        touch "$root/.outbox-ready"
    fi
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
    if ! mountpoint -q "$root/dev"; then
        mount --rbind /dev "$root/dev"
        mount --make-rslave "$root/dev"
    fi
    trap 'umount -R "'"$root"'/dev" 2>/dev/null || true; umount "'"$root"'/proc" 2>/dev/null || true' EXIT
    apt_install "$root" build-essential "postgresql-$major" "postgresql-server-dev-$major" \
        librdkafka-dev $TAP_PACKAGES

    local pgc=/usr/lib/postgresql/$major/bin/pg_config
    copy_tree "$root/build/outbox"
    echo "== building outbox against $(chroot "$root" "$pgc" --version) ($suite)"
    # with_llvm=no: Debian's pg_config asks for clang bitcode, which the tests do not need
    chroot "$root" sh -c "cd /build/outbox && make -s PG_CONFIG=$pgc with_llvm=no PG_CFLAGS='$WERROR' &&
        make -s PG_CONFIG=$pgc with_llvm=no install >/dev/null"
    npm_install "$root" /build/outbox
    make_user "$root"
    chroot "$root" chown -R "$TESTUSER:" /build/outbox
    echo "== installcheck (as $TESTUSER)"
    local rc=0
    chroot "$root" su "$TESTUSER" -c "cd /build/outbox && make -s PG_CONFIG=$pgc with_llvm=no installcheck ${quick:+TAP_TESTS=}" \
        2>&1 | tee "$CACHE/installcheck-$major.out" || rc=$?
    summarize "$CACHE/installcheck-$major.out" "$root/build/outbox" "$rc" "PostgreSQL $major ($suite)"
}

# --- a PostgreSQL source tree or tarball, built into a private prefix
run_source() {
    local src=$1
    apt_install "" build-essential bison flex zlib1g-dev pkg-config perl librdkafka-dev $TAP_PACKAGES
    if [ -f "$src" ]; then
        local unpacked=$CACHE/src-$(basename "$src" | sed 's/\.tar\..*//; s/\.tgz$//')
        if [ ! -f "$unpacked/configure" ]; then
            rm -rf "$unpacked"; mkdir -p "$unpacked"
            tar -C "$unpacked" --strip-components=1 -xf "$src"
        fi
        src=$unpacked
    fi
    src=$(cd "$src" && pwd)
    [ -f "$src/configure.ac" ] || { echo "$src: not a PostgreSQL source tree" >&2; exit 2; }
    local version
    version=$(sed -n 's/^AC_INIT(\[PostgreSQL\], \[\([^]]*\)\].*/\1/p' "$src/configure.ac")
    [ -n "$version" ] || { echo "$src: no PostgreSQL version in configure.ac" >&2; exit 2; }
    local prefix=$CACHE/pg-$version build=$CACHE/pgbuild-$version
    if [ ! -x "$prefix/bin/pg_config" ] || [ "$(cat "$prefix/.outbox-source" 2>/dev/null)" != "$src" ]; then
        echo "== building PostgreSQL $version from $src into $prefix (10+ minutes on 2 cores)"
        rm -rf "$prefix" "$build"; mkdir -p "$build"
        (cd "$build" && "$src/configure" --prefix="$prefix" --enable-cassert --enable-debug \
            --enable-tap-tests --without-icu --without-readline &&
            make -j"$(nproc)" && make install) >"$CACHE/pgbuild-$version.log" 2>&1 ||
            { tail -30 "$CACHE/pgbuild-$version.log" >&2; exit 1; }
        echo "$src" >"$prefix/.outbox-source"
        rm -rf "$build"
    fi
    # test/t/005 reads the WAL with pg_walinspect (contrib, PostgreSQL 15+)
    if [ -d "$src/contrib/pg_walinspect" ] &&
        [ ! -f "$("$prefix/bin/pg_config" --sharedir)/extension/pg_walinspect.control" ]; then
        echo "== building contrib/pg_walinspect"
        make -s -C "$src/contrib/pg_walinspect" USE_PGXS=1 PG_CONFIG="$prefix/bin/pg_config" install \
            >"$CACHE/pgbuild-$version-walinspect.log" 2>&1 ||
            { tail -30 "$CACHE/pgbuild-$version-walinspect.log" >&2; exit 1; }
    fi
    make_user ""

    local pgc=$prefix/bin/pg_config tree=$CACHE/outbox-$version
    copy_tree "$tree"
    echo "== building outbox against $("$pgc" --version) (cassert)"
    npm_install "" "$tree"
    (cd "$tree" && make -s PG_CONFIG="$pgc" PG_CFLAGS="$WERROR" &&
        make -s PG_CONFIG="$pgc" install >/dev/null && chown -R "$TESTUSER:" .)
    echo "== installcheck (as $TESTUSER)"
    local rc=0
    su "$TESTUSER" -c "cd '$tree' && make -s PG_CONFIG='$pgc' installcheck ${quick:+TAP_TESTS=}" 2>&1 |
        tee "$CACHE/installcheck-$version.out" || rc=$?
    summarize "$CACHE/installcheck-$version.out" "$tree" "$rc" "PostgreSQL $version (source, cassert)"
}

case $1 in
    --src) [ $# = 2 ] || usage; run_source "$2" ;;
    [0-9]*) [ $# = 1 ] || usage; run_chroot "$1" ;;
    *) usage ;;
esac
