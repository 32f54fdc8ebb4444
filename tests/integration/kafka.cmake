# End-to-end tests of the Kafka sink: gateway + kafka-mock-broker + intentra-bench, results
# read back with kcat (skipped, exit 77, when kcat is missing).
foreach(case exactly_once broker_down sigkill_spool reverse)
  intentra_script_test(kafka_e2e_${case}
    COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/kafka_e2e.py ${case}
    TIMEOUT 300)
  set_tests_properties(kafka_e2e_${case} PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endforeach()
