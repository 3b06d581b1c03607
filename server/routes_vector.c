/*
 * routes_vector.c — the vector store over HTTP (docs/VECTORS.md).
 */
#include "server.h"

const ks_route ks_routes_vector[] = {
    {NULL, NULL, NULL, NULL},
};
