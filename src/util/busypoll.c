/* SPDX-License-Identifier: MIT */
/* The busy-poll rules; see busypoll.h. */
#include "util/busypoll.h"

#include <time.h>

uint64_t
bp_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
bp_group_init(struct bp_group *g, unsigned window_us)
{
    g->window_us = window_us;
    atomic_init(&g->spins, 0);
    atomic_init(&g->last, NULL);
    atomic_init(&g->shared_ns, 0);
    atomic_init(&g->quiet_until, 0);
    atomic_init(&g->quiet_ns, 0);
}

void
bp_note_request(struct bp_group *g, const void *who)
{
    if (atomic_load_explicit(&g->last, memory_order_relaxed) != who) {
        atomic_store_explicit(&g->last, who, memory_order_relaxed);
        atomic_store_explicit(&g->shared_ns, bp_now_ns(), memory_order_relaxed);
    }
}

/*
 * After a spin: 'contended' says that it kept runnable threads from a core.
 * Then nobody spins for a while, longer each time it happens again; spins
 * without contention shorten that again.
 */
static void
bp_pause(struct bp_group *g, uint64_t now, bool contended)
{
    uint64_t q = atomic_load_explicit(&g->quiet_ns, memory_order_relaxed);

    if (contended) {
        q = q < BP_QUIET_MIN_NS ? BP_QUIET_MIN_NS : q * 2;
        q = q > BP_QUIET_MAX_NS ? BP_QUIET_MAX_NS : q;
        atomic_store_explicit(&g->quiet_until, now + q, memory_order_relaxed);
    } else {
        q /= 2;
    }
    atomic_store_explicit(&g->quiet_ns, q, memory_order_relaxed);
}

uint64_t
bp_spin_begin(struct bp_group *g, struct bp_state *s)
{
    uint64_t window = (uint64_t)g->window_us * 1000u;
    uint64_t t0;

    if (window == 0 || !s->ok) {
        return 0;
    }
    t0 = bp_now_ns();
    if (t0 - atomic_load_explicit(&g->shared_ns, memory_order_relaxed) <
        BP_SOLO_NS) {
        return 0;
    }
    if (t0 < atomic_load_explicit(&g->quiet_until, memory_order_relaxed)) {
        return 0;
    }
    if (t0 - s->period >= BP_PERIOD_NS) {
        s->period = t0;
        s->wasted = 0;
    }
    if (s->wasted >= BP_BUDGET_NS) {
        return 0;
    }
    atomic_fetch_add_explicit(&g->spins, 1, memory_order_relaxed);
    s->t_spin = t0;
    s->t_look = t0;
    s->preempted = false;
    return t0 + window;
}

void
bp_spin_end(struct bp_group *g, struct bp_state *s, uint64_t now, bool caught)
{
    bp_spin_look(s, now);
    bp_pause(g, now, s->preempted);
    s->missed = !caught;
    if (!caught) {
        s->ok = false;
        s->wasted += now - s->t_spin;
    }
}

void
bp_sleeping(struct bp_group *g, struct bp_state *s)
{
    s->t_sleep = g->window_us ? bp_now_ns() : 0;
}

void
bp_woken(struct bp_group *g, struct bp_state *s)
{
    uint64_t t_wake;

    if (s->t_sleep == 0) {
        return;
    }
    /* would a spin have caught this request? */
    t_wake = bp_now_ns();
    s->ok = t_wake - s->t_sleep <= (uint64_t)g->window_us * 1000u;
    if (s->ok && s->missed) {
        /* a whole window in vain, then the request came at once: its
         * sender likely waited for our core */
        bp_pause(g, t_wake, true);
    }
    s->missed = false;
    s->t_sleep = 0;
}
