# bench_smoke: runs `bench/run --quick --scenario ingest` against this build tree (gateway,
# intentra-bench, the raw receiver and blaster, the microbenchmarks) so the benchmark scripts
# cannot rot. A smoke run checks that every figure is produced, not how fast anything is.
if(INTENTRA_BENCH)
  intentra_script_test(bench_smoke
    COMMAND ${PROJECT_SOURCE_DIR}/bench/run --quick --scenario ingest --strict --no-build
            --build-dir ${PROJECT_BINARY_DIR} --out ${PROJECT_BINARY_DIR}/bench-smoke
    LABELS slow
    TIMEOUT 60)
endif()
