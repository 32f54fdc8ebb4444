# libFuzzer target for the Kafka disk buffer's record parser (INTENTRA_FUZZ=ON, CC=clang); seeds
# in tests/fuzz/corpus/fuzz_spool/ (regenerate with `fuzz_spool_replay --make-seeds DIR`).
intentra_add_fuzzer(fuzz_spool ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_spool.c LIBS gw_core)
if(TARGET fuzz_spool)
  target_include_directories(fuzz_spool PRIVATE ${PROJECT_SOURCE_DIR}/connectors)
endif()

# Without libFuzzer the same harness replays the seed corpus as a regression test.
if(NOT INTENTRA_FUZZ)
  add_executable(fuzz_spool_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_spool.c)
  target_compile_definitions(fuzz_spool_replay PRIVATE FUZZ_SPOOL_STANDALONE)
  target_include_directories(fuzz_spool_replay PRIVATE ${PROJECT_SOURCE_DIR}/connectors)
  target_link_libraries(fuzz_spool_replay PRIVATE gw_core)
  intentra_target_defaults(fuzz_spool_replay)
  file(GLOB _fuzz_spool_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/fuzz_spool/*)
  add_test(NAME fuzz_spool_corpus COMMAND fuzz_spool_replay ${_fuzz_spool_seeds})
  set_tests_properties(fuzz_spool_corpus PROPERTIES LABELS unit TIMEOUT 60
    PASS_REGULAR_EXPRESSION "replayed 5 inputs")
endif()
