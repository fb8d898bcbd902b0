/*
 * handoff.c: spin-wait primitives for a cross-thread hand-off (algocline_nb._native).
 *
 * Plain C with no Python and no Lua headers. Python loads this library with ctypes.CDLL, which
 * releases the GIL for the length of each call, so a thread spinning here lets the others run.
 * Every shared int is read with an acquire load and written with a release store (or a release
 * read-modify-write), so what one side wrote before it changed a flag is visible to the other
 * side once it sees the change.
 */
#if !defined(__APPLE__) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c11 */
#endif

#include <stdint.h>
#include <time.h>

#if defined(_WIN32)
#define ALC_EXPORT __declspec(dllexport)
#else
#define ALC_EXPORT __attribute__((visibility("default")))
#endif

/* How many polls of the flag between two reads of the clock. */
#define ALC_CLOCK_EVERY 64

static inline void alc_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static inline long long alc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec;
}

/* Spin until *flag != old (1) or until spin_ns nanoseconds have passed (0). */
static int alc_spin(volatile int *flag, int old, long long spin_ns)
{
    if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != old) {
        return 1;
    }
    if (spin_ns <= 0) {
        return 0;
    }
    long long deadline = alc_now_ns() + spin_ns;
    for (;;) {
        for (int i = 0; i < ALC_CLOCK_EVERY; i++) {
            if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != old) {
                return 1;
            }
            alc_cpu_relax();
        }
        if (alc_now_ns() >= deadline) {
            return __atomic_load_n(flag, __ATOMIC_ACQUIRE) != old;
        }
    }
}

ALC_EXPORT int alc_spin_until_changed(volatile int *flag, int old, long long spin_ns)
{
    return alc_spin(flag, old, spin_ns);
}

ALC_EXPORT int alc_bump_and_spin(volatile int *done, volatile int *kick, int old_kick,
                                 long long spin_ns)
{
    __atomic_add_fetch(done, 1, __ATOMIC_RELEASE);
    return alc_spin(kick, old_kick, spin_ns);
}

ALC_EXPORT void alc_store(volatile int *flag, int value)
{
    __atomic_store_n(flag, value, __ATOMIC_RELEASE);
}

ALC_EXPORT int alc_load(volatile int *flag)
{
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

ALC_EXPORT int alc_abi_version(void)
{
    return 3;
}

/* ------------------------------------------------------------------ the Lua count hook
 *
 * The time-slicing and cancellation hook of a strategy's coroutines, in C so that it never
 * takes the GIL (the ctypes hook in _preempt.py does, at every call: forty runaways in sort
 * comparators then fight the registry's loop for it). The Lua C API is reached through
 * function pointers handed over once by alc_hook_init (read from lupa's extension module), so
 * this file needs no Lua headers and no link step.
 *
 * Each Lua worker thread binds one alc_slice (alc_bind_thread) that Python fills before each
 * step: the deadline, the session's stop flag, active. The hook
 *   - on a stop flag hands the coroutine to the Lua-level hook (ldblib's dispatcher), which
 *     raises the cancel error at the next instruction (a longjmp from here would be fine, but
 *     the Lua hook keeps one cancel path for both builds);
 *   - past the deadline, where the coroutine can yield, records it and yields (Lua suspends it
 *     once the hook returns); where it cannot (a comparator, a callback), it does nothing: the
 *     step keeps its worker until it leaves that code, or until it is cancelled.
 */

typedef struct lua_State lua_State;
typedef struct lua_Debug lua_Debug;
typedef void (*alc_lua_Hook)(lua_State *L, lua_Debug *ar);
typedef void (*alc_sethook_t)(lua_State *L, alc_lua_Hook f, int mask, int count);
typedef int (*alc_yieldk_t)(lua_State *L, int nresults, intptr_t ctx, void *k);
typedef int (*alc_isyieldable_t)(lua_State *L);

#define ALC_MASKCOUNT 8 /* LUA_MASKCOUNT */
#define ALC_PREEMPTED 16

typedef struct {
    long long deadline_ns;           /* CLOCK_MONOTONIC; 0: no deadline */
    volatile int *stop;              /* the session's stop flag; NULL: none */
    void *preempted[ALC_PREEMPTED];  /* coroutines the hook suspended, not yet claimed */
    int preempts;                    /* how many it suspended (a counter, never reset) */
    int active;                      /* 1 while a step runs on this thread */
    int overrun;                     /* the step is past its deadline where it cannot yield */
} alc_slice;

static alc_sethook_t alc_p_sethook;
static alc_yieldk_t alc_p_yieldk;
static alc_isyieldable_t alc_p_isyieldable;
static alc_lua_Hook alc_p_luahook;
static __thread alc_slice *alc_cur;

static void alc_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    alc_slice *s = alc_cur;
    if (s == 0 || !s->active) {
        return;
    }
    if (s->stop != 0 && __atomic_load_n(s->stop, __ATOMIC_RELAXED)) {
        alc_p_sethook(L, alc_p_luahook, ALC_MASKCOUNT, 1);
        return;
    }
    if (s->deadline_ns == 0 || alc_now_ns() <= s->deadline_ns) {
        return;
    }
    if (alc_p_isyieldable(L)) {
        for (int i = 0; i < ALC_PREEMPTED; i++) {
            if (s->preempted[i] == 0) {
                s->preempted[i] = (void *)L;
                break;
            }
        }
        s->preempts++;
        alc_p_yieldk(L, 0, 0, 0); /* returns: Lua suspends the coroutine after the hook */
    } else {
        s->overrun = 1; /* it holds this worker: the pool may grow past it */
    }
}

ALC_EXPORT int alc_hook_init(void *sethook, void *yieldk, void *isyieldable, void *luahook)
{
    if (!sethook || !yieldk || !isyieldable || !luahook) {
        return 0;
    }
    alc_p_sethook = (alc_sethook_t)sethook;
    alc_p_yieldk = (alc_yieldk_t)yieldk;
    alc_p_isyieldable = (alc_isyieldable_t)isyieldable;
    alc_p_luahook = (alc_lua_Hook)luahook;
    return 1;
}

ALC_EXPORT void *alc_hook_address(void)
{
    return (void *)alc_hook;
}

ALC_EXPORT void alc_bind_thread(alc_slice *s)
{
    alc_cur = s;
}

ALC_EXPORT int alc_slice_size(void)
{
    return (int)sizeof(alc_slice);
}
