# Kafka connector tests: the disk buffer (spool) on real files, and the sink and consumer
# against a real kafka-mock-broker process with a real librdkafka consumer checking results.
intentra_unit_test(test_kafka_spool SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_kafka_spool.c
  LIBS gw_core)
target_include_directories(test_kafka_spool PRIVATE ${PROJECT_SOURCE_DIR}/connectors)

# The connector through its vtable against a kafka-mock-broker process, read back with a
# librdkafka consumer. Two 10 s broker outages make it the slow one.
intentra_unit_test(test_kafka SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_kafka.c
  LIBS gw_core PkgConfig::RDKAFKA TIMEOUT 300)
target_include_directories(test_kafka PRIVATE ${PROJECT_SOURCE_DIR}/connectors)
target_compile_definitions(test_kafka PRIVATE
  KAFKA_MOCK_BROKER="$<TARGET_FILE:kafka-mock-broker>")
add_dependencies(test_kafka kafka-mock-broker)

# The reverse path (Kafka -> fleet) with a fake gateway publish function.
intentra_unit_test(test_kafka_consumer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_kafka_consumer.c
  LIBS gw_core PkgConfig::RDKAFKA TIMEOUT 240)
target_include_directories(test_kafka_consumer PRIVATE ${PROJECT_SOURCE_DIR}/connectors)
target_compile_definitions(test_kafka_consumer PRIVATE
  KAFKA_MOCK_BROKER="$<TARGET_FILE:kafka-mock-broker>")
add_dependencies(test_kafka_consumer kafka-mock-broker)
