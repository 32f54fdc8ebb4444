/* itr_time.c: the clocks of the IO layer (monotonic for protocol time, realtime for display). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <time.h>

#include <intentra/driver.h>

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    /* clock_gettime cannot fail for these two clocks with a valid pointer. */
    (void)clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t itr_now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t itr_wall_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}
