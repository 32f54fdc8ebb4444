# intentra-keygen: creates a 0600 identity key file and prints its public key.
add_executable(intentra-keygen ${CMAKE_CURRENT_LIST_DIR}/intentra-keygen.c)
target_link_libraries(intentra-keygen PRIVATE intentra)
intentra_target_defaults(intentra-keygen)
install(TARGETS intentra-keygen RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
