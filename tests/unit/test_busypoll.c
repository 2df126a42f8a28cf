/* SPDX-License-Identifier: MIT */
/*
 * The busy-poll rules (src/util/busypoll.c), each on its own: the window,
 * "requests came within the window lately", the budget of time spun in
 * vain, one peer alone, and the pause after a spin that kept other
 * threads from the core (a preemption, seen as a gap between two looks of
 * the spin, or a miss followed at once by the request).  The transports' use of them is tested in
 * tests/server/test_hotpath.c and tests/vhost/test_vhost_9p.c.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "tap.h"
#include "util/busypoll.h"

static void
sleep_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000u,
                          .tv_nsec = (long)(us % 1000000u) * 1000};

    nanosleep(&ts, NULL);
}

/* A spin that finds nothing: runs to its deadline. */
static bool
spin_in_vain(struct bp_group *g, struct bp_state *s)
{
    uint64_t end = bp_spin_begin(g, s);
    uint64_t t;

    if (end == 0) {
        return false;
    }
    do {
        bp_relax();
        t = bp_now_ns();
        bp_spin_look(s, t);
    } while (t < end);
    bp_spin_end(g, s, t, false);
    return true;
}

/* A spin that catches a request at once. */
static bool
spin_and_catch(struct bp_group *g, struct bp_state *s)
{
    if (bp_spin_begin(g, s) == 0) {
        return false;
    }
    bp_spin_end(g, s, bp_now_ns(), true);
    return true;
}

/* Forget pauses: for the checks of the other rules (a spin here can be
 * preempted by whatever else the machine runs). */
static void
calm(struct bp_group *g)
{
    atomic_store(&g->quiet_until, 0);
    atomic_store(&g->quiet_ns, 0);
}

/* A sleep that a request ends after 'us'. */
static void
sleep_then_request(struct bp_group *g, struct bp_state *s, unsigned us)
{
    bp_sleeping(g, s);
    if (us) {
        sleep_us(us);
    }
    bp_woken(g, s);
}

static void
test_window_and_recent_requests(void)
{
    struct bp_group g;
    struct bp_state s = {0};

    bp_group_init(&g, 0);
    s.ok = true;
    tap_ok(bp_spin_begin(&g, &s) == 0, "window/zero_never_spins");

    bp_group_init(&g, 1000);
    s = (struct bp_state){0};
    tap_ok(bp_spin_begin(&g, &s) == 0,
           "window/no_spin_before_a_request_came_within_the_window");
    sleep_then_request(&g, &s, 0);
    tap_ok(spin_and_catch(&g, &s), "window/spins_after_a_quick_request");
    tap_ok(atomic_load(&g.spins) == 1, "window/spin_counted (%lu)",
           atomic_load(&g.spins));
    tap_ok(spin_and_catch(&g, &s), "window/a_caught_spin_keeps_spinning");
    tap_ok(spin_in_vain(&g, &s), "window/spin_in_vain_runs");
    calm(&g);
    tap_ok(bp_spin_begin(&g, &s) == 0, "window/no_spin_after_one_in_vain");
    s.missed = false; /* not the pause rule here */
    sleep_then_request(&g, &s, 5000);
    calm(&g);
    tap_ok(bp_spin_begin(&g, &s) == 0,
           "window/no_spin_after_a_request_5ms_after_sleeping (window 1 ms)");
}

static void
test_budget(void)
{
    struct bp_group g;
    struct bp_state s = {0};
    int spins = 0;

    bp_group_init(&g, 2000); /* 2 ms per spin: 5 in vain fill 10 ms */
    for (int i = 0; i < 20; i++) {
        s.ok = true;
        s.missed = false;
        calm(&g);
        if (!spin_in_vain(&g, &s)) {
            break;
        }
        spins++;
    }
    /* 5 spins, fewer if the machine's other work stretched some (the
     * budget is wall time spun) */
    tap_ok(spins >= 1 && spins <= 5 && s.wasted >= BP_BUDGET_NS,
           "budget/at_most_10ms_in_vain_per_period (%d spins of 2 ms, "
           "%.1f ms)",
           spins, (double)s.wasted / 1e6);
    calm(&g);
    tap_ok(bp_spin_begin(&g, &s) == 0, "budget/spent");
    sleep_us(BP_PERIOD_NS / 1000u + 1000u);
    s.ok = true;
    tap_ok(spin_and_catch(&g, &s), "budget/back_in_the_next_period");
}

static void
test_solo(void)
{
    struct bp_group g;
    struct bp_state s = {0};
    int a;
    int b;

    bp_group_init(&g, 1000);
    s.ok = true;
    bp_note_request(&g, &a);
    tap_ok(bp_spin_begin(&g, &s) == 0, "solo/a_new_peer_counts_as_another_one");
    sleep_us(BP_SOLO_NS / 1000u + 2000u);
    tap_ok(spin_and_catch(&g, &s), "solo/one_peer_spins");
    bp_note_request(&g, &b);
    bp_note_request(&g, &a);
    s.ok = true;
    tap_ok(bp_spin_begin(&g, &s) == 0, "solo/two_peers_taking_turns_do_not");
    sleep_us(BP_SOLO_NS / 1000u + 2000u);
    bp_note_request(&g, &a);
    s.ok = true;
    tap_ok(spin_and_catch(&g, &s), "solo/one_peer_alone_for_10ms_spins_again");
}

static void
test_pause_after_miss(void)
{
    struct bp_group g;
    struct bp_state s = {0};
    uint64_t q1;
    bool spun;

    /* a short spin in vain that nothing preempted (tries again if the
     * machine's other work did) */
    for (int i = 0; i < 20; i++) {
        bp_group_init(&g, 20);
        s = (struct bp_state){.ok = true};
        spun = spin_in_vain(&g, &s);
        if (!spun || atomic_load(&g.quiet_until) == 0) {
            break;
        }
    }
    tap_ok(spun && atomic_load(&g.quiet_until) == 0, "pause/spin_in_vain");
    sleep_then_request(&g, &s, 0); /* the request came at once */
    q1 = atomic_load(&g.quiet_ns);
    tap_ok(q1 == BP_QUIET_MIN_NS && bp_spin_begin(&g, &s) == 0,
           "pause/miss_then_request_at_once_pauses_everyone (%llu ns)",
           (unsigned long long)q1);
    sleep_us(1500);
    /* nothing between begin and end: printing could wake the reader of
     * our output, which may preempt us */
    spun = bp_spin_begin(&g, &s) != 0;
    if (spun) {
        bp_spin_end(&g, &s, bp_now_ns(), false); /* clean: halves the pause */
    }
    tap_ok(spun, "pause/over_after_1ms");
    tap_ok(atomic_load(&g.quiet_ns) == q1 / 2,
           "pause/a_clean_spin_halves_it (%llu ns)",
           (unsigned long long)atomic_load(&g.quiet_ns));
    sleep_then_request(&g, &s, 0);
    s.missed = true;
    sleep_then_request(&g, &s, 0);
    /* 0.5 ms, doubled twice */
    tap_ok(atomic_load(&g.quiet_ns) == 2 * q1 && bp_spin_begin(&g, &s) == 0,
           "pause/each_one_doubles_it (%llu ns)",
           (unsigned long long)atomic_load(&g.quiet_ns));
}

/* A runnable thread on the spinner's CPU. */
static atomic_bool hog_stop;

static void *
hog(void *arg)
{
    (void)arg;
    while (!atomic_load(&hog_stop)) {
        bp_relax();
    }
    return NULL;
}

static void
test_pause_after_preemption(void)
{
    struct bp_group g;
    struct bp_state s = {0};
    cpu_set_t one;
    cpu_set_t old;
    pthread_attr_t attr;
    pthread_t t;
    bool spun;

    if (sched_getaffinity(0, sizeof(old), &old) != 0) {
        tap_ok(false, "preempt/affinity");
        return;
    }
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
    pthread_attr_init(&attr);
    pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
    sched_setaffinity(0, sizeof(one), &one);
    atomic_store(&hog_stop, false);
    if (pthread_create(&t, &attr, hog, NULL) != 0) {
        tap_ok(false, "preempt/hog_thread");
        return;
    }
    /* a 100 ms spin on a CPU with another runnable thread: the scheduler
     * switches to it within a few ms */
    bp_group_init(&g, 100000);
    s.ok = true;
    spun = spin_in_vain(&g, &s);
    atomic_store(&hog_stop, true);
    pthread_join(t, NULL);
    pthread_attr_destroy(&attr);
    sched_setaffinity(0, sizeof(old), &old);
    tap_ok(spun && atomic_load(&g.quiet_ns) == BP_QUIET_MIN_NS &&
               atomic_load(&g.quiet_until) > 0,
           "preempt/a_preempted_spin_pauses_everyone (pause %llu ns)",
           (unsigned long long)atomic_load(&g.quiet_ns));
}

/*
 * Preemption is seen without a syscall: two looks of a spin more than
 * BP_GAP_NS apart mean the thread was off its CPU.  With times given, so
 * that the machine's load cannot change the outcome.
 */
static void
test_gap_between_looks(void)
{
    struct bp_group g;
    struct bp_state s = {.ok = true};
    uint64_t t0;

    bp_group_init(&g, 1000);
    t0 = bp_spin_begin(&g, &s) - 1000000u;
    bp_spin_look(&s, t0 + 10000u);
    bp_spin_look(&s, t0 + 20000u);
    bp_spin_end(&g, &s, t0 + 30000u, true);
    tap_ok(atomic_load(&g.quiet_until) == 0,
           "gap/looks_10us_apart_are_no_preemption");
    s.ok = true;
    t0 = bp_spin_begin(&g, &s) - 1000000u;
    bp_spin_look(&s, t0 + 10000u);
    bp_spin_look(&s, t0 + 10000u + BP_GAP_NS + 1000u);
    bp_spin_end(&g, &s, t0 + 12000u + BP_GAP_NS, true);
    tap_ok(atomic_load(&g.quiet_ns) == BP_QUIET_MIN_NS &&
               atomic_load(&g.quiet_until) > 0,
           "gap/a_gap_longer_than_BP_GAP_NS_pauses_everyone");
    calm(&g);
    s.ok = true;
    t0 = bp_spin_begin(&g, &s) - 1000000u;
    bp_spin_end(&g, &s, t0 + BP_GAP_NS + 1000u, true);
    tap_ok(atomic_load(&g.quiet_until) > 0,
           "gap/from_the_start_to_the_end_without_a_look");
}

int
main(void)
{
    test_window_and_recent_requests();
    test_budget();
    test_solo();
    test_pause_after_miss();
    test_pause_after_preemption();
    test_gap_between_looks();
    return tap_done();
}
