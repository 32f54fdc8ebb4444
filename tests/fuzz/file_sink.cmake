# The file sink's line formatter (connectors/file/file_format.c): a libFuzzer target with
# INTENTRA_FUZZ=ON (CC=clang); otherwise the same harness replays the seed corpus in
# tests/fuzz/corpus/fuzz_file_format/ as a unit test.
intentra_add_fuzzer(fuzz_file_format ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_file_format.c
  LIBS gw_core)
if(TARGET fuzz_file_format)
  target_include_directories(fuzz_file_format PRIVATE ${PROJECT_SOURCE_DIR}/connectors/file)
endif()
if(NOT INTENTRA_FUZZ)
  add_executable(fuzz_file_format_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_file_format.c)
  target_compile_definitions(fuzz_file_format_replay PRIVATE FUZZ_FILE_FORMAT_REPLAY)
  target_include_directories(fuzz_file_format_replay PRIVATE ${PROJECT_SOURCE_DIR}/connectors/file)
  target_link_libraries(fuzz_file_format_replay PRIVATE gw_core)
  intentra_target_defaults(fuzz_file_format_replay)
  file(GLOB _ff_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/fuzz_file_format/*)
  add_test(NAME fuzz_file_format_replay COMMAND fuzz_file_format_replay ${_ff_seeds})
  set_tests_properties(fuzz_file_format_replay PROPERTIES LABELS "unit;fuzz" TIMEOUT 60)
endif()
