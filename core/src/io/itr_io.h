/* itr_io.h: private interfaces between the IO layer's files (driver and client). */
#ifndef INTENTRA_ITR_IO_H
#define INTENTRA_ITR_IO_H

#include <stdint.h>

#include <intentra/driver.h>

/* Called on the loop thread when a socket reports an error: an ICMP error queued on a
 * connected socket (ECONNREFUSED when nothing listens at the peer), or a send the kernel
 * refused (the datagram was consumed and counted in send_errors). err is an errno value. The
 * client uses it to tell "refused" from "timeout"; the driver itself only counts. */
void itr_driver_set_error_hook(itr_driver *d, void (*hook)(void *arg, uint32_t local, int err),
                               void *arg);

#endif
