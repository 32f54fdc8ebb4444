# Router microbenchmark: ns per routed message at 10 and 1,000 routes, per-shard and all-glob
# layouts (bench/router_bench.c). Run: router_bench [--json] [--quick].
add_executable(router_bench ${CMAKE_CURRENT_SOURCE_DIR}/router_bench.c)
target_link_libraries(router_bench PRIVATE gw_core)
intentra_target_defaults(router_bench)
