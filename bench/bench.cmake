# bench.cmake: the reference programs bench/run measures the gateway against: the raw UDP
# receive ceiling and its blaster, the raw librdkafka producer, and the handshake flood.
# They include the fleet tools' header-only helpers (bench_payload.h, histogram.h) from tools/.
add_executable(raw-udp-sink ${CMAKE_CURRENT_LIST_DIR}/raw_udp_sink.c)
target_link_libraries(raw-udp-sink PRIVATE intentra)

add_executable(udp-blast ${CMAKE_CURRENT_LIST_DIR}/udp_blast.c)
target_link_libraries(udp-blast PRIVATE intentra)

add_executable(raw-kafka-producer ${CMAKE_CURRENT_LIST_DIR}/raw_kafka_producer.c)
target_link_libraries(raw-kafka-producer PRIVATE PkgConfig::RDKAFKA)
if(INTENTRA_JEMALLOC)
  # The gateway's allocator, with the gateway's options (INTENTRA_JEMALLOC_CONF; MALLOC_CONF
  # reaches both): with glibc malloc the unpaced producer's 100,000 queued records cost it
  # 15-40 % more CPU per message; the ceiling should be the stronger one.
  target_link_libraries(raw-kafka-producer PRIVATE PkgConfig::JEMALLOC)
  target_compile_definitions(raw-kafka-producer PRIVATE
                             INTENTRA_JEMALLOC_CONF="${INTENTRA_JEMALLOC_CONF}")
endif()

# Builds spoofed message 1 datagrams with the core's own wire and cookie code.
add_executable(handshake-flood ${CMAKE_CURRENT_LIST_DIR}/handshake_flood.c)
target_link_libraries(handshake-flood PRIVATE intentra intentra_internal)

foreach(prog raw-udp-sink udp-blast raw-kafka-producer handshake-flood)
  target_include_directories(${prog} PRIVATE ${PROJECT_SOURCE_DIR}/tools)
  intentra_target_defaults(${prog})
endforeach()
