# Unit tests of the IO-free protocol primitives (core/src/proto: wire codec, replay window,
# rate limiter, strikes, cookies, envelope). Pure functions with scripted time: fast, no IO.
foreach(t wire replay ratelimit strikes envelope cookie)
  intentra_unit_test(test_${t}
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_${t}.c
    LIBS intentra intentra_internal
    TIMEOUT 60)
endforeach()
