/*
 * routes_io.c — whole-database routes: verify, export and import.
 */
#include "server.h"

const ks_route ks_routes_io[] = {
    {NULL, NULL, NULL, NULL},
};
