# The webhook sink (connectors/http/): the Standard Webhooks signature against the spec's test
# vector and OpenSSL (unit), and end-to-end runs of gateway + intentra-bench + a real HTTP
# server in python stdlib that verifies every signature (tests/integration/webhook_e2e.py).
intentra_unit_test(test_webhook_sign
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_webhook_sign.c
  LIBS gw_core)
target_include_directories(test_webhook_sign PRIVATE ${PROJECT_SOURCE_DIR}/connectors/http)
foreach(case exactly_once outage_503 retry_after dead_letter realtime_discard routing tls
    bad_destination batch_limits check_config)
  intentra_script_test(webhook_e2e_${case}
    COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/webhook_e2e.py ${case}
    TIMEOUT 240)
  set_tests_properties(webhook_e2e_${case} PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endforeach()
