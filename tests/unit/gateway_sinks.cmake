# Sink runtime and the file/null connectors (gateway/sinks.c, connectors/{file,null}).
intentra_unit_test(test_file_sink
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_file_sink.c
  LIBS gw_core)
target_include_directories(test_file_sink PRIVATE ${PROJECT_SOURCE_DIR}/connectors/file)
intentra_unit_test(test_sinks
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_sinks.c
  LIBS gw_core)
