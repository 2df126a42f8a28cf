/* SPDX-License-Identifier: MIT */
/*
 * --busy-poll: the rules for when a serving thread may spin, waiting for
 * its peer's next request without sleeping, instead of sleeping at once.
 * Shared by the stream transport (a connection thread spins in poll() with
 * a zero timeout) and the vhost-user device (its thread watches the ring's
 * avail index in guest memory, with notifications left off).
 *
 * A thread spins only
 *   - while its requests have been arriving within the window: a spin
 *     that catches nothing stops spinning until a request again arrives
 *     within the window of going to sleep, and the time spun in vain is
 *     capped per period (BP_BUDGET_NS per BP_PERIOD_NS);
 *   - while one peer of the group alone sends requests (none from another
 *     for BP_SOLO_NS): a server that serves several peers is awake anyway,
 *     and a spinning thread would take a core from their clients or a
 *     guest's vCPUs;
 *   - and not for a while after a spin kept runnable threads from its
 *     core: it was preempted, or it caught nothing and the request came at
 *     once after it stopped.  Then nobody in the group spins for 1 ms,
 *     doubling while it happens again up to 1 s; spins without contention
 *     halve that again.
 */
#ifndef VIRTFS_UTIL_BUSYPOLL_H
#define VIRTFS_UTIL_BUSYPOLL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define BP_PERIOD_NS 100000000u     /* 100 ms */
#define BP_BUDGET_NS 10000000u      /* 10 ms of it in vain: 10 % of a core */
#define BP_QUIET_MIN_NS 1000000u    /* 1 ms */
#define BP_QUIET_MAX_NS 1000000000u /* 1 s */
#define BP_SOLO_NS 10000000u        /* 10 ms */
/* Two looks of a spin this far apart: the thread was off its CPU (another
 * thread ran there, or the hypervisor took the vCPU).  A look is a poll()
 * or a read of the ring's index, a few µs at most. */
#define BP_GAP_NS 50000u /* 50 µs */

/* Shared by the threads of one server (a stream loop, a vhost server). */
struct bp_group {
    unsigned window_us; /* 0: never spin */
    atomic_ulong spins; /* spins started (tests) */
    /* the peer that sent the last request, and when a request last came
     * from another one than the one before (ns, bp_now_ns) */
    _Atomic(const void *) last;
    _Atomic uint64_t shared_ns;
    /* no spinning before this (ns); and how long that pause is */
    _Atomic uint64_t quiet_until;
    _Atomic uint64_t quiet_ns;
};

/* One per spinning thread (its own; not shared). */
struct bp_state {
    bool ok;          /* requests came within the window lately */
    bool missed;      /* the last spin caught nothing */
    uint64_t period;  /* ns: start of the current budget period */
    uint64_t wasted;  /* ns spun in it without catching a request */
    uint64_t t_sleep; /* ns: when the thread last went to sleep, or 0 */
    uint64_t t_spin;  /* ns: start of the current spin */
    uint64_t t_look;  /* ns: its last look (bp_spin_look) */
    bool preempted;   /* a gap between two looks: the thread was off CPU */
};

/* CLOCK_MONOTONIC in ns. */
uint64_t bp_now_ns(void);

/* A group spinning up to 'window_us' (0: off).  Not thread-safe. */
void bp_group_init(struct bp_group *g, unsigned window_us);

/* A request arrived from peer 'who' (any stable pointer). */
void bp_note_request(struct bp_group *g, const void *who);

/*
 * May the thread spin now?  If so the spin has begun (it is counted) and
 * the deadline (ns, bp_now_ns) is returned; else 0, and the thread should
 * sleep (calling bp_sleeping first).
 */
uint64_t bp_spin_begin(struct bp_group *g, struct bp_state *s);

/* The spinning loop looked (for a request) at 'now' (bp_now_ns): a gap of
 * BP_GAP_NS since its last look means it was preempted.  No syscall: a
 * spin costs its looks and clock reads only. */
static inline void
bp_spin_look(struct bp_state *s, uint64_t now)
{
    if (now - s->t_look > BP_GAP_NS) {
        s->preempted = true;
    }
    s->t_look = now;
}

/* The spin begun by bp_spin_begin ended at 'now'; 'caught': it found a
 * request. */
void bp_spin_end(struct bp_group *g, struct bp_state *s, uint64_t now,
                 bool caught);

/* The thread goes to sleep waiting for requests. */
void bp_sleeping(struct bp_group *g, struct bp_state *s);

/* It woke because a request arrived (after bp_sleeping). */
void bp_woken(struct bp_group *g, struct bp_state *s);

/* What a spinning loop does between two looks (a pause hint). */
static inline void
bp_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
