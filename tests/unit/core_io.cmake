# Tests of the IO layer (core/src/io): the epoll loop, UDP sockets and steering, the
# recvmmsg/sendmmsg driver over real loopback sockets, and the client convenience API.
foreach(t loop udp)
  intentra_unit_test(test_${t}
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${t}.c
    LIBS intentra
    TIMEOUT 60)
endforeach()

# Real sockets on 127.0.0.1 through a lossy shim; bounded at 120 s inside the test.
intentra_unit_test(test_driver_loopback
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_driver_loopback.c
  LIBS intentra
  TIMEOUT 300)

# client.h against an in-process responder on another thread; also runs the README example.
intentra_unit_test(test_client
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_client.c
  LIBS intentra intentra_internal
  TIMEOUT 120)
target_compile_definitions(test_client PRIVATE
  INTENTRA_EXAMPLE_CLIENT="$<TARGET_FILE:intentra-example-client>")
add_dependencies(test_client intentra-example-client)

# Fault injection: sendmmsg and the allocator wrapped at link time (see the file's header).
intentra_unit_test(test_driver_faults
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_driver_faults.c
  LIBS intentra
  TIMEOUT 120)
target_link_options(test_driver_faults PRIVATE
  -Wl,--wrap=sendmmsg -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc)
