/* intentra/intentra.h: umbrella header of libintentra, the intentra transport. */
#ifndef INTENTRA_INTENTRA_H
#define INTENTRA_INTENTRA_H

#include <intentra/error.h>
#include <intentra/endpoint.h>
#include <intentra/keys.h>
#include <intentra/driver.h>
#include <intentra/client.h>

#endif
