# libFuzzer target for the gateway config loader (INTENTRA_FUZZ=ON, CC=clang).
# Seeds in tests/fuzz/corpus/fuzz_config/.
intentra_add_fuzzer(fuzz_config ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_config.c LIBS gw_core)
