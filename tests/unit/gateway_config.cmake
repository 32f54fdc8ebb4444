# Gateway configuration model and routing structures: logging (log.c), config loading and
# validation (config.c), the shard table (shards.c) and the router (router.c).
foreach(t log config shards router)
  intentra_unit_test(test_${t}
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_${t}.c
    LIBS gw_core
    TIMEOUT 60)
endforeach()
# test_config loads every conf/*.json and conf/examples/*.json.
target_compile_definitions(test_config PRIVATE
  INTENTRA_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
# Every allocation of a config load, shard build and route compile fails in turn: our code's
# allocations are redirected by the linker to the test's failing allocator.
intentra_unit_test(test_config_nomem
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_config_nomem.c
  LIBS gw_core
  TIMEOUT 120)
target_link_options(test_config_nomem PRIVATE
  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc)
# The daemon reports the allocator that really serves its malloc: jemalloc in a default build
# (INTENTRA_JEMALLOC, bench/README.md says why), glibc's in sanitizer and fuzzer builds.
if(INTENTRA_JEMALLOC)
  # ... with the huge-page mode compiled in (INTENTRA_JEMALLOC_CONF) taking effect.
  string(REGEX MATCH "thp:[a-z]+" _thp "${INTENTRA_JEMALLOC_CONF}")
  if(NOT _thp)
    set(_thp "thp:default")
  endif()
  set(_alloc "jemalloc [0-9.]+ ${_thp}")
else()
  set(_alloc "glibc")
endif()
add_test(NAME gateway_version COMMAND intentra-gateway --version)
set_tests_properties(gateway_version PROPERTIES LABELS unit TIMEOUT 30
  PASS_REGULAR_EXPRESSION "intentra-gateway [0-9.]+\nallocator ${_alloc}")
