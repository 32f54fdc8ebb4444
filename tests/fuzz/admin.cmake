# Admin request-body validators (gateway/admin.c, gateway/state.c): libFuzzer target with
# INTENTRA_FUZZ=ON (CC=clang); otherwise the same harness replays the seed corpus in
# tests/fuzz/corpus/fuzz_admin_json/ as a unit test. Linked with the fake gateway
# (tests/lib/fake_control.c) because admin.c and state.c call into the daemon.
set(_admin_fuzz_src
  ${PROJECT_SOURCE_DIR}/gateway/admin.c
  ${PROJECT_SOURCE_DIR}/gateway/state.c
  ${PROJECT_SOURCE_DIR}/gateway/metrics.c
  ${PROJECT_SOURCE_DIR}/gateway/log.c
  ${PROJECT_SOURCE_DIR}/gateway/json_check.c
  ${PROJECT_SOURCE_DIR}/tests/lib/fake_control.c)
set(_admin_fuzz_libs intentra PkgConfig::CJSON PkgConfig::MHD PkgConfig::SODIUM Threads::Threads m)
set(_admin_fuzz_inc ${PROJECT_SOURCE_DIR}/gateway ${PROJECT_SOURCE_DIR}/connectors
  ${PROJECT_SOURCE_DIR}/tests/lib)

intentra_add_fuzzer(fuzz_admin_json ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_admin_json.c
  LIBS ${_admin_fuzz_libs})
if(TARGET fuzz_admin_json)
  target_sources(fuzz_admin_json PRIVATE ${_admin_fuzz_src})
  target_include_directories(fuzz_admin_json PRIVATE ${_admin_fuzz_inc})
endif()

if(NOT INTENTRA_FUZZ)
  add_executable(fuzz_admin_json_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_admin_json.c
    ${_admin_fuzz_src})
  target_compile_definitions(fuzz_admin_json_replay PRIVATE FUZZ_ADMIN_STANDALONE)
  target_include_directories(fuzz_admin_json_replay PRIVATE ${_admin_fuzz_inc})
  target_link_libraries(fuzz_admin_json_replay PRIVATE ${_admin_fuzz_libs})
  intentra_target_defaults(fuzz_admin_json_replay)
  file(GLOB _admin_fuzz_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/fuzz_admin_json/*)
  list(LENGTH _admin_fuzz_seeds _admin_fuzz_nseeds)
  add_test(NAME fuzz_admin_json_corpus COMMAND fuzz_admin_json_replay ${_admin_fuzz_seeds})
  set_tests_properties(fuzz_admin_json_corpus PROPERTIES LABELS unit TIMEOUT 60
    PASS_REGULAR_EXPRESSION "replayed ${_admin_fuzz_nseeds} inputs")
endif()
