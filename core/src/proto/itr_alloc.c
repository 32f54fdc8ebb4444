/* itr_alloc.c: the core's allocation calls with a failure hook for tests (see itr_alloc.h). */
#include "itr_alloc.h"

#include <stdlib.h>

static int (*alloc_fail)(void *arg, size_t size);
static void *alloc_fail_arg;

void itr_alloc_test_failer(int (*fail)(void *arg, size_t size), void *arg)
{
    alloc_fail = fail;
    alloc_fail_arg = arg;
}

void *itr_malloc(size_t n)
{
    if (alloc_fail && alloc_fail(alloc_fail_arg, n))
        return NULL;
    return malloc(n ? n : 1);
}

void *itr_calloc(size_t n, size_t size)
{
    if (alloc_fail && alloc_fail(alloc_fail_arg, n * size))
        return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void itr_free(void *p)
{
    free(p);
}
