/* routes_query.c — placeholder until helper "query" lands the query routes. */
#include "server.h"

const ks_route ks_routes_query[] = {{NULL, NULL, NULL, NULL}};
