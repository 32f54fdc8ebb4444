# Admin API against the real daemon (tests/integration/admin_*.py, python3 stdlib + the shared
# harness): error classes and concurrent writers, live peers and publish, persistence across a
# restart, a real Prometheus scraping /metrics, a live shard remap, and 1,000 admin requests
# during a 100k msgs/s run. Exit code 77 = skipped (e.g. prometheus not installed).
foreach(case errors peers restart)
  intentra_script_test(admin_api_${case}
    COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/admin_api.py ${case}
    TIMEOUT 180)
  set_tests_properties(admin_api_${case} PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endforeach()
foreach(script prometheus remap load)
  intentra_script_test(admin_${script}
    COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/admin_${script}.py
    TIMEOUT 240)
  set_tests_properties(admin_${script} PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endforeach()
