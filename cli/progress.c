/*
 * progress.c — the progress bar of `kdelta import` (see progress.h).
 *
 *   [##########..........]  48%  480,000 rows  215,300 rows/s  ETA 0:03
 *
 * The line is redrawn in place with '\r' and cleared with "\033[K"; it is
 * cut to the terminal's width so it never wraps.
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

uint64_t progress_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* 1234567 -> "1,234,567" */
static const char *grouped(uint64_t n, char *buf, size_t len)
{
    char tmp[32];
    int digits = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)n);
    size_t o = 0;
    for (int i = 0; i < digits && o + 2 < len; i++) {
        if (i > 0 && (digits - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

static void draw(struct progress *p, uint64_t rows, uint64_t bytes, uint64_t now)
{
    double secs = (double)(now - p->t0_ns) / 1e9;
    double rate = secs > 0 ? (double)rows / secs : 0;
    char line[512], a[32], b[32];
    int n = 0;
    if (p->total_bytes > 0) {
        double frac = (double)bytes / (double)p->total_bytes;
        if (frac > 1)
            frac = 1;
        char bar[21];
        int fill = (int)(frac * 20);
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[20] = '\0';
        n = snprintf(line, sizeof line, "[%s] %3d%%  ", bar, (int)(frac * 100));
        snprintf(line + n, sizeof line - (size_t)n, "%s rows  %s rows/s", grouped(rows, a, sizeof a),
                 grouped((uint64_t)rate, b, sizeof b));
        n = (int)strlen(line);
        if (frac > 0.001 && secs > 0.2) {
            double eta = secs / frac - secs;
            unsigned long e = (unsigned long)(eta + 0.5);
            snprintf(line + n, sizeof line - (size_t)n, "  ETA %lu:%02lu:%02lu", e / 3600, e / 60 % 60, e % 60);
        }
    } else {
        snprintf(line, sizeof line, "%s rows  %s rows/s  %.1f MB", grouped(rows, a, sizeof a),
                 grouped((uint64_t)rate, b, sizeof b), (double)bytes / 1048576.0);
    }
    int width = term_width() - 1;
    if ((int)strlen(line) > width)
        line[width] = '\0';
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    p->drawn = 1;
}

void progress_start(struct progress *p, uint64_t total_bytes)
{
    memset(p, 0, sizeof *p);
    p->enabled = isatty(STDERR_FILENO);
    p->total_bytes = total_bytes;
    p->t0_ns = p->last_ns = progress_now_ns();
    if (p->enabled)
        draw(p, 0, 0, p->t0_ns); /* at once, so even a short import shows it */
}

void progress_update(struct progress *p, uint64_t rows, uint64_t bytes)
{
    if (!p->enabled || ++p->calls < 64)
        return;
    progress_poll(p, rows, bytes);
}

void progress_poll(struct progress *p, uint64_t rows, uint64_t bytes)
{
    if (!p->enabled)
        return;
    p->calls = 0;
    uint64_t now = progress_now_ns();
    if (now - p->last_ns < 100000000u)
        return;
    p->last_ns = now;
    draw(p, rows, bytes, now);
}

void progress_clear(struct progress *p)
{
    if (p->enabled && p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}
