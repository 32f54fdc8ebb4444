# Crypto layer: primitives, Noise XX, key files, and the Noise test vectors.
set(_vec ${PROJECT_SOURCE_DIR}/tests/vectors)

# The published vectors, through libsodium's AES-GCM and through the OpenSSL fallback.
add_test(NAME noise_vectors COMMAND intentra-vectors ${_vec}/noise-xx.json)
add_test(NAME noise_vectors_openssl COMMAND intentra-vectors --openssl-aesgcm ${_vec}/noise-xx.json)
# A copy with one byte changed per vector: the runner must notice both and fail.
add_test(NAME noise_vectors_detects_mismatch COMMAND intentra-vectors ${_vec}/noise-xx-tampered.json)
set_tests_properties(noise_vectors noise_vectors_openssl noise_vectors_detects_mismatch
  PROPERTIES LABELS unit TIMEOUT 60)
set_tests_properties(noise_vectors_detects_mismatch PROPERTIES
  PASS_REGULAR_EXPRESSION "vector 0 .*message 4 .*ciphertext differs.*vector 1 .*handshake hash differs.*0 passed, 2 failed")

foreach(t crypto noise keys)
  intentra_unit_test(test_${t}
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${t}.c
    LIBS intentra intentra_internal
    TIMEOUT 120)
endforeach()

# intentra-keygen end to end: create (0600, public key printed), refuse to overwrite, --public
# agrees, lax permissions refused with the chmod hint, usage errors exit 2.
add_test(NAME keygen_cli COMMAND sh -c [=[
set -u
K="$1"; D=$(mktemp -d) || exit 1
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
pub=$("$K" "$D/id.key") || fail "create"
echo "$pub" | grep -Eq '^[0-9a-f]{64}$' || fail "public key format: $pub"
[ "$(stat -c %a "$D/id.key")" = 600 ] || fail "mode"
out=$("$K" "$D/id.key" 2>&1); [ $? -eq 1 ] || fail "overwrite not refused"
echo "$out" | grep -q "already exists" || fail "overwrite message: $out"
[ "$("$K" --public "$D/id.key")" = "$pub" ] || fail "--public differs"
chmod 640 "$D/id.key"
out=$("$K" --public "$D/id.key" 2>&1); [ $? -eq 1 ] || fail "lax mode accepted"
echo "$out" | grep -q "chmod 600 $D/id.key" || fail "chmod hint: $out"
"$K" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no args"
"$K" --bogus >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad option"
"$K" --version | grep -q '^intentra-keygen ' || fail "--version"
"$K" --help | grep -q -- '--public' || fail "--help"
echo ok
]=] keygen_cli $<TARGET_FILE:intentra-keygen>)
set_tests_properties(keygen_cli PROPERTIES LABELS unit TIMEOUT 60 PASS_REGULAR_EXPRESSION "^ok")
