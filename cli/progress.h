/*
 * progress.h — a one-line progress bar on stderr for long commands (import).
 *
 * Drawn only when stderr is a terminal, at most ten times a second, and
 * erased before anything else is written to stderr. With a known total
 * (file size in bytes) it shows a bar, a percentage and an ETA; otherwise
 * rows, rate and bytes only.
 */
#ifndef KD_CLI_PROGRESS_H
#define KD_CLI_PROGRESS_H

#include <stdint.h>

struct progress {
    int enabled;          /* stderr is a terminal */
    int drawn;            /* a line is on the screen */
    uint64_t total_bytes; /* 0 = unknown */
    uint64_t t0_ns;       /* start (CLOCK_MONOTONIC) */
    uint64_t last_ns;     /* last redraw */
    unsigned calls;       /* updates since the last clock read */
};

/* Monotonic clock in ns. */
uint64_t progress_now_ns(void);

/* Start; enabled only when stderr is a terminal (then drawn at once). */
void progress_start(struct progress *p, uint64_t total_bytes);
/* Cheap to call for every row: reads the clock every 64 calls and redraws
 * at most every 100 ms. */
void progress_update(struct progress *p, uint64_t rows, uint64_t bytes);
/* The same, reading the clock at once (after a batch was written). */
void progress_poll(struct progress *p, uint64_t rows, uint64_t bytes);
/* Erase the bar (before printing an error or the summary). Idempotent. */
void progress_clear(struct progress *p);

#endif
