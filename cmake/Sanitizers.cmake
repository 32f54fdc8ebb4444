# ASan + UBSan for the whole build (INTENTRA_SANITIZE), and libFuzzer targets (INTENTRA_FUZZ).
# -fno-sanitize-recover makes every UB report fatal, so a test cannot pass past one.
if(INTENTRA_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=address,undefined -fno-sanitize-recover=all)
  add_compile_definitions(INTENTRA_SANITIZE=1)
endif()
if(INTENTRA_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "INTENTRA_FUZZ needs clang: configure with CC=clang")
  endif()
  # Every object gets coverage instrumentation; only fuzz targets link libFuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

# intentra_add_fuzzer(<name> <source> LIBS <libs...>): a libFuzzer target, seeds in
# tests/fuzz/corpus/<name>/.
function(intentra_add_fuzzer name source)
  cmake_parse_arguments(F "" "" "LIBS" ${ARGN})
  if(NOT INTENTRA_FUZZ)
    return()
  endif()
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  intentra_target_defaults(${name})
  set_property(GLOBAL APPEND PROPERTY INTENTRA_FUZZERS ${name})
endfunction()
