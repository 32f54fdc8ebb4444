# libFuzzer targets of the endpoint (INTENTRA_FUZZ=ON, CC=clang): fuzz_packet (transport path
# of an established session) and fuzz_handshake (messages 1-3 and cookie replies). Seeds in
# tests/fuzz/corpus/<target>/ (regenerate with `<target>_replay --make-seeds DIR`).
intentra_add_fuzzer(fuzz_packet ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_packet.c
  LIBS intentra intentra_internal)
intentra_add_fuzzer(fuzz_handshake ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_handshake.c
  LIBS intentra intentra_internal)

# Without libFuzzer the same harnesses replay their seed corpora as regression tests (every
# invariant checked on every step; ASan/UBSan builds make any memory error fatal).
if(NOT INTENTRA_FUZZ)
  # What the seeds must achieve (update when seeds are added).
  set(_fuzz_packet_expect "replayed 6 inputs, 13 Reliable deliveries")
  set(_fuzz_handshake_expect "replayed 11 inputs, 10 completed handshakes")
  foreach(t fuzz_packet fuzz_handshake)
    add_executable(${t}_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${t}.c)
    target_compile_definitions(${t}_replay PRIVATE FUZZ_ENDPOINT_STANDALONE)
    target_link_libraries(${t}_replay PRIVATE intentra intentra_internal)
    intentra_target_defaults(${t}_replay)
    file(GLOB _seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${t}/*)
    add_test(NAME ${t}_corpus COMMAND ${t}_replay ${_seeds})
    set_tests_properties(${t}_corpus PROPERTIES LABELS unit TIMEOUT 120
      PASS_REGULAR_EXPRESSION "${_${t}_expect}")
  endforeach()
endif()
