# endpoint-bench: the IO-free core on one core, in memory: handshakes/s (responder share
# separately), seal+open per DATA packet through the endpoint, memory per idle session.
add_executable(endpoint-bench ${CMAKE_CURRENT_LIST_DIR}/endpoint_bench.c)
target_link_libraries(endpoint-bench PRIVATE intentra intentra_internal)
intentra_target_defaults(endpoint-bench)
