# intentra-vectors: runs Noise test vectors (tests/vectors/*.json) against the Noise XX code.
add_executable(intentra-vectors ${CMAKE_CURRENT_LIST_DIR}/intentra-vectors.c)
target_link_libraries(intentra-vectors PRIVATE intentra intentra_internal PkgConfig::CJSON)
intentra_target_defaults(intentra-vectors)
