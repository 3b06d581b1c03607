/*
 * vector.h — `kdelta vector` (vector.c) and the options only it takes,
 * which main.c parses.
 *
 * These options would sit in struct cli (cli.h) with the other command
 * options; until they move there, main.c keeps them for the command line
 * it parsed last (cli_parse resets them, and the shell parses a line, runs
 * it, then parses the next), and vector.c reads them with
 * cli_vector_options().
 */
#ifndef KD_CLI_VECTOR_H
#define KD_CLI_VECTOR_H

#include <stdint.h>

#include "cli.h"

struct cli_vector_options {
    const char *model;     /* --model M: put (required), search (only that model) */
    const char *meta;      /* --meta JSON: put */
    const char *metric;    /* --metric cosine|dot|l2: search */
    const char *min_score; /* --min-score S: search */
    int64_t top;           /* -k/--top N: search, 0 = not given (10) */
    int64_t ef;            /* --ef N: search */
    int ef_set;
};

/* main.c: the vector options of the command line parsed last. */
const struct cli_vector_options *cli_vector_options(void);

/* vector.c: kdelta vector put|get|log|delete|search|stats */
int cmd_vector(struct cli *c);

#endif
