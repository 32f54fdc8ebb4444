# The file sink on a real full tmpfs and a read-only remount, inside `unshare -m`
# (tests/integration/file_sink_disk.sh; exit 77 = skipped where unshare is not permitted).
add_executable(file_sink_disk ${CMAKE_CURRENT_SOURCE_DIR}/integration/file_sink_disk.c)
target_link_libraries(file_sink_disk PRIVATE gw_core)
intentra_target_defaults(file_sink_disk)
intentra_script_test(file_sink_disk
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/integration/file_sink_disk.sh
          $<TARGET_FILE:file_sink_disk>
  LABELS integration TIMEOUT 180)
set_tests_properties(file_sink_disk PROPERTIES SKIP_RETURN_CODE 77)
