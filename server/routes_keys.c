/* routes_keys.c — placeholder until helper "keys" lands the key routes. */
#include "server.h"

const ks_route ks_routes_keys[] = {{NULL, NULL, NULL, NULL}};
