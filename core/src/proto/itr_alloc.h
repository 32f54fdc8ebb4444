/* itr_alloc.h: every allocation of the protocol core goes through these, so a test can make
 * any one of them fail and check that the failure is clean (no leak, no half-built object,
 * a documented error). Allocation happens only in itr_endpoint_new and when a handshake
 * starts or completes; never per packet.
 */
#ifndef ITR_ALLOC_H
#define ITR_ALLOC_H

#include <stddef.h>

void *itr_malloc(size_t n);
void *itr_calloc(size_t n, size_t size);
void itr_free(void *p);

/* Tests only: while set, an allocation fails when fail(arg, size) returns nonzero. NULL
 * restores normal allocation. Process-wide and not synchronized: set it while no endpoint is
 * being used on another thread. */
void itr_alloc_test_failer(int (*fail)(void *arg, size_t size), void *arg);

#endif
