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
    return 1;
}
