# tools/install-deps.sh: a bad argument is refused (exit 2); on a machine without dpkg (a cluster
# with environment modules) it installs nothing, says so and succeeds, so `make build` goes on to
# CMake; here, with every package of the test level installed, it is silent and succeeds.
source "$(dirname "$0")/lib.sh"
deps=$LEGR_SRC/tools/install-deps.sh
RC=0
bash "$deps" everything >"$T/bad.out" 2>&1 || RC=$?
[[ $RC -eq 2 ]] || fail "a bad argument gave exit $RC"
expect_grep "unknown argument 'everything'" "$T/bad.out" "the bad argument's message"
RC=0
env -i PATH=/nonexistent /bin/bash "$deps" demo >"$T/nodpkg.out" 2>&1 || RC=$?
[[ $RC -eq 0 ]] || fail "without dpkg: exit $RC"
expect_grep "no dpkg here: not installing packages" "$T/nodpkg.out" "without dpkg"
RC=0
bash "$deps" test >"$T/ok.out" 2>&1 || RC=$?
[[ $RC -eq 0 && ! -s $T/ok.out ]] || { cat "$T/ok.out"; fail "all installed: exit $RC or output"; }
note "OK"
