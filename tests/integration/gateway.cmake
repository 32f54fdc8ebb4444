# End-to-end tests of the daemon (real gateway, bench, send and file sink processes).
foreach(case reliable_file two_workers sighup sigterm_under_load reject_unknown disk_full
             port_in_use)
  intentra_script_test(e2e_${case}
    COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/gateway_e2e.py ${case}
    TIMEOUT 240)
  set_tests_properties(e2e_${case} PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endforeach()
