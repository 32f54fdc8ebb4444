# intentra-example-client: the short client.h example quoted in README.md.
add_executable(intentra-example-client ${CMAKE_CURRENT_LIST_DIR}/example-client.c)
target_link_libraries(intentra-example-client PRIVATE intentra)
intentra_target_defaults(intentra-example-client)
install(TARGETS intentra-example-client RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
