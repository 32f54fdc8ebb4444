# kafka-mock-broker: librdkafka's mock cluster as a standalone test broker (Kafka tests, bench).
add_executable(kafka-mock-broker ${CMAKE_CURRENT_LIST_DIR}/kafka-mock-broker.c)
target_link_libraries(kafka-mock-broker PRIVATE PkgConfig::RDKAFKA Threads::Threads)
intentra_target_defaults(kafka-mock-broker)
