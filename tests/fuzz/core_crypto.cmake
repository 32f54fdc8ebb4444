# Noise XX responder fuzzing (INTENTRA_FUZZ=ON, CC=clang); seeds in tests/fuzz/corpus/fuzz_noise/
# (regenerate with `fuzz_noise_replay --make-seeds DIR`).
intentra_add_fuzzer(fuzz_noise ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_noise.c
  LIBS intentra intentra_internal)

# Without libFuzzer, the same harness replays the seed corpus as a regression test: every seed
# runs without a broken invariant, and the three complete transcripts finish the handshake.
if(NOT INTENTRA_FUZZ)
  add_executable(fuzz_noise_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_noise.c)
  target_compile_definitions(fuzz_noise_replay PRIVATE FUZZ_NOISE_STANDALONE)
  target_link_libraries(fuzz_noise_replay PRIVATE intentra intentra_internal)
  intentra_target_defaults(fuzz_noise_replay)
  file(GLOB _fuzz_noise_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/fuzz_noise/*)
  add_test(NAME fuzz_noise_corpus COMMAND fuzz_noise_replay ${_fuzz_noise_seeds})
  set_tests_properties(fuzz_noise_corpus PROPERTIES LABELS unit TIMEOUT 60
    PASS_REGULAR_EXPRESSION "replayed 5 inputs, 3 completed handshakes")
endif()
