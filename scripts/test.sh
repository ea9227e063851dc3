#!/usr/bin/env bash
# The test suite, as the README names it: installs the system tools the tests call (when
# missing), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)   # makes X.509 test certificates
command -v tar >/dev/null || need+=(tar)           # GNU tar reads our patches in tests
command -v gzip >/dev/null || need+=(gzip)
command -v rpm >/dev/null || need+=(rpm)           # rpm and rpmbuild: the conformance suite
command -v rpmbuild >/dev/null || need+=(rpm)      # builds real packages, rpm is the reference
# A static shell for the scriptlets that run chrooted in test roots.
if ! { [ -x /bin/busybox ] && LC_ALL=C ldd /bin/busybox 2>&1 | grep -q "not a dynamic"; }; then
    need+=(busybox-static)
fi
command -v groff >/dev/null || need+=(groff-base)  # renders the generated man pages
command -v systemd-analyze >/dev/null || need+=(systemd)  # verifies the service units
# A real PostgreSQL server, started by the tests on a temporary directory and port (the
# distributed cloud controller's database; SQLite is the default).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)  # the dashboard's browser test
command -v chromedriver >/dev/null || need+=(chromium-driver)
# The original StarlingX sw-patch client (cli/tests/original/) runs on the system's Python;
# jsonschema checks the API descriptions against the OpenAPI 3.1 schema.
for module in requests:python3-requests requests_toolbelt:python3-requests-toolbelt \
    netaddr:python3-netaddr six:python3-six jsonschema:python3-jsonschema; do
    /usr/bin/python3 -c "import ${module%%:*}" 2>/dev/null || need+=("${module#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

cargo test --workspace --locked "$@"
