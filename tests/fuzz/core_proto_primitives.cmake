# libFuzzer target for the header and envelope parsers (INTENTRA_FUZZ=ON, CC=clang).
# Seeds in tests/fuzz/corpus/fuzz_header/.
intentra_add_fuzzer(fuzz_header ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_header.c
  LIBS intentra intentra_internal)
