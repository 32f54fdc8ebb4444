# aead-bench: AEAD back ends, X25519 and Noise XX handshake cost (why libsodium AES-GCM).
add_executable(aead-bench ${CMAKE_CURRENT_LIST_DIR}/aead_bench.c)
target_link_libraries(aead-bench PRIVATE intentra intentra_internal OpenSSL::Crypto)
intentra_target_defaults(aead-bench)
