# End-to-end tests of the Redis sink: gateway + redis-server (started by the test on a free
# loopback port) + intentra-bench, results read back over RESP (skipped, exit 77, when
# redis-server is missing; check_config needs no server).
foreach(case stream publish restart dead_letter auth realtime check_config)
  intentra_script_test(redis_e2e_${case}
    COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/redis_e2e.py ${case}
    TIMEOUT 240)
  set_tests_properties(redis_e2e_${case} PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endforeach()
