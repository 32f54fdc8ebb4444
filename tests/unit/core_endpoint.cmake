# Tests of the IO-free endpoint (core/src/proto/itr_endpoint.c and friends): scripted time over
# the in-memory network tests/lib/memnet.c, no sockets.
add_library(intentra_memnet STATIC ${PROJECT_SOURCE_DIR}/tests/lib/memnet.c)
target_link_libraries(intentra_memnet PUBLIC intentra)
target_include_directories(intentra_memnet PUBLIC ${PROJECT_SOURCE_DIR}/tests/lib)
intentra_target_defaults(intentra_memnet)

foreach(t basic attacks stream rekey edges tables)
  if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/test_endpoint_${t}.c)
    intentra_unit_test(test_endpoint_${t}
      SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_endpoint_${t}.c
              ${CMAKE_CURRENT_LIST_DIR}/test_endpoint_util.c
      LIBS intentra_memnet intentra intentra_internal
      TIMEOUT 300)
  endif()
endforeach()
