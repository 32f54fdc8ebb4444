# Admin API (gateway/admin.c, state.c, metrics.c) against the in-memory fake gateway
# (tests/lib/fake_control.c), which stands in for gateway.c and the sink runtime: these tests
# compile the admin sources directly instead of linking gw_core.
set(ADMIN_TEST_SRC
  ${PROJECT_SOURCE_DIR}/gateway/admin.c
  ${PROJECT_SOURCE_DIR}/gateway/state.c
  ${PROJECT_SOURCE_DIR}/gateway/metrics.c
  ${PROJECT_SOURCE_DIR}/gateway/log.c
  ${PROJECT_SOURCE_DIR}/gateway/json_check.c
  ${PROJECT_SOURCE_DIR}/tests/lib/fake_control.c)
set(ADMIN_TEST_LIBS intentra PkgConfig::CJSON PkgConfig::MHD PkgConfig::SODIUM PkgConfig::CURL m
  Threads::Threads)

intentra_unit_test(test_admin
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_admin.c ${ADMIN_TEST_SRC}
  LIBS ${ADMIN_TEST_LIBS} TIMEOUT 180)
target_include_directories(test_admin PRIVATE ${PROJECT_SOURCE_DIR}/gateway
  ${PROJECT_SOURCE_DIR}/connectors)

intentra_unit_test(test_metrics
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_metrics.c ${ADMIN_TEST_SRC}
  LIBS ${ADMIN_TEST_LIBS})
target_include_directories(test_metrics PRIVATE ${PROJECT_SOURCE_DIR}/gateway
  ${PROJECT_SOURCE_DIR}/connectors)
