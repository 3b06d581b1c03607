/*
 * test_lone.c — the server's rule for when a durable write syncs on its own
 * event thread (server/lone.h): a lone writer does, every time; writers
 * with company queue for the shared fsync, and keep doing so while other
 * writes start during each sync or the connections take turns, whatever
 * the size of the last group.
 */
#include <string.h>

#include "harness.h"
#include "../../server/lone.h"

static const char conn_a[1], conn_b[1];

/* One write by `conn` that asks to sync inline; 1 when it may. */
static int write_may_go_inline(ks_lone *l, int queue_empty, const void *conn, ks_lone_mark *mark)
{
    ks_lone_started(l);
    return ks_lone_try(l, queue_empty, conn, mark);
}

/* One write by `conn` that queues and is synced alone by the durability
 * thread, with no other write starting meanwhile. */
static void write_synced_alone(ks_lone *l, const void *conn)
{
    ks_lone_started(l);
    ks_lone_mark d = ks_lone_sync_begin(l);
    ks_lone_sync_end(l, d, 1, conn);
}

/* A fresh rule whose last sync covered one write of conn_a's, alone: where
 * every test starts (a connection's first write queues). */
static void start_after_a(ks_lone *l)
{
    memset(l, 0, sizeof *l);
    write_synced_alone(l, conn_a);
}

static void test_lone_writer_stays_inline(void)
{
    ks_lone l;
    start_after_a(&l);
    for (int i = 0; i < 5; i++) {
        ks_lone_mark mark;
        CHECK(write_may_go_inline(&l, 1, conn_a, &mark));
        ks_lone_sync_end(&l, mark, 1, conn_a);
    }
}

static void test_not_inline_while_busy(void)
{
    ks_lone l;
    start_after_a(&l);
    ks_lone_mark mark;
    /* something queued */
    CHECK(!write_may_go_inline(&l, 0, conn_a, &mark));
    /* a sync running */
    ks_lone_mark m = ks_lone_sync_begin(&l);
    CHECK(!write_may_go_inline(&l, 1, conn_a, &mark));
    ks_lone_sync_end(&l, m, 2, NULL);
    /* the last sync covered two writes */
    CHECK(!write_may_go_inline(&l, 1, conn_a, &mark));
}

/* One event thread holding many connections: while it syncs one write
 * inline it reads no other request, so no write starts meanwhile. Writes
 * from connections taking turns must queue anyway; judged by the last
 * group alone, each went inline and the server made one fsync per write. */
static void test_connections_taking_turns(void)
{
    ks_lone l;
    start_after_a(&l);
    ks_lone_mark mark;
    CHECK(!write_may_go_inline(&l, 1, conn_b, &mark));
    write_synced_alone(&l, conn_b);
    CHECK(!write_may_go_inline(&l, 1, conn_a, &mark));
}

/* Two event threads: A syncs inline, B's write queues behind it and the
 * durability thread syncs it alone (a group of one) while A's next write
 * starts. A's next write must queue too. */
static void test_company_during_inline_sync(void)
{
    ks_lone l;
    start_after_a(&l);
    ks_lone_mark a, b;
    CHECK(write_may_go_inline(&l, 1, conn_a, &a));  /* A, inline */
    CHECK(!write_may_go_inline(&l, 1, conn_b, &b)); /* B: A's sync runs, so B queues */
    ks_lone_mark d = ks_lone_sync_begin(&l);        /* the durability thread takes B */
    ks_lone_sync_end(&l, a, 1, conn_a);             /* A's sync ends: B started meanwhile */
    ks_lone_mark a2;
    ks_lone_started(&l);                            /* A's next write starts during B's sync */
    ks_lone_sync_end(&l, d, 1, conn_b);             /* B's sync ends, a group of one */
    CHECK(!ks_lone_try(&l, 1, conn_b, &a2));
    CHECK(!ks_lone_try(&l, 1, conn_a, &a2));        /* A's next write queues */

    /* Once a sync of one write passes with no other write starting, that
     * connection's next write goes inline again. */
    ks_lone_mark d2 = ks_lone_sync_begin(&l);
    ks_lone_sync_end(&l, d2, 1, conn_a);
    CHECK(write_may_go_inline(&l, 1, conn_a, &a2));
    ks_lone_sync_end(&l, a2, 1, conn_a);
}

/* Two syncs that overlap, each of one write with no write starting
 * meanwhile: B's write is made first but cannot go inline (A wrote last),
 * A's goes inline, then B's queues and the durability thread syncs it
 * beside A's. Neither may leave the next write free to go inline. */
static void test_overlapping_syncs(void)
{
    ks_lone l;
    start_after_a(&l);
    ks_lone_mark a, b;
    ks_lone_started(&l);                    /* B's write */
    ks_lone_started(&l);                    /* A's write */
    CHECK(!ks_lone_try(&l, 1, conn_b, &b)); /* B: A wrote last */
    CHECK(ks_lone_try(&l, 1, conn_a, &a));  /* A goes inline */
    ks_lone_mark d = ks_lone_sync_begin(&l); /* B, queued, is synced alone */
    ks_lone_sync_end(&l, a, 1, conn_a);
    ks_lone_sync_end(&l, d, 1, conn_b);
    CHECK(!write_may_go_inline(&l, 1, conn_b, &b));
    CHECK(!ks_lone_try(&l, 1, conn_a, &a));

    /* the same, ending in the other order */
    start_after_a(&l);
    ks_lone_started(&l);
    ks_lone_started(&l);
    CHECK(ks_lone_try(&l, 1, conn_a, &a));
    d = ks_lone_sync_begin(&l);
    ks_lone_sync_end(&l, d, 1, conn_b);
    ks_lone_sync_end(&l, a, 1, conn_a);
    CHECK(!write_may_go_inline(&l, 1, conn_a, &a));
    CHECK(!ks_lone_try(&l, 1, conn_b, &b));
}

int main(void)
{
    RUN(test_lone_writer_stays_inline);
    RUN(test_not_inline_while_busy);
    RUN(test_connections_taking_turns);
    RUN(test_company_during_inline_sync);
    RUN(test_overlapping_syncs);
    return HARNESS_DONE();
}
