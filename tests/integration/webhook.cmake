# The webhook sink (connectors/http/): the Standard Webhooks signature against the spec's test
# vector and OpenSSL (unit), and end-to-end runs of gateway + intentra-bench + a real HTTP
# server in python stdlib that verifies every signature (tests/integration/webhook_e2e.py).
# The signing module is compiled in with GW_WEBHOOK_SIGN_TEST to reach its libsodium fallback.
intentra_unit_test(test_webhook_sign
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_webhook_sign.c
          ${PROJECT_SOURCE_DIR}/connectors/http/webhook_sign.c
  LIBS PkgConfig::SODIUM OpenSSL::Crypto)
target_include_directories(test_webhook_sign PRIVATE ${PROJECT_SOURCE_DIR}/connectors/http)
target_compile_definitions(test_webhook_sign PRIVATE GW_WEBHOOK_SIGN_TEST)
foreach(case exactly_once outage_503 retry_after dead_letter realtime_discard routing tls
    bad_destination batch_limits mixed sigterm check_config)
  intentra_script_test(webhook_e2e_${case}
    COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/webhook_e2e.py ${case}
    TIMEOUT 240)
  set_tests_properties(webhook_e2e_${case} PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endforeach()
