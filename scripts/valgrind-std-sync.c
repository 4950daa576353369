/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * Preload library for scripts/thread-check.sh: tells valgrind's helgrind and drd about Rust
 * std's Mutex and Arc as memenc's debug build uses them, so that the data those protect is
 * checked instead of reported (or suppressed) wholesale.
 *
 * Why: std::sync::Mutex is a futex word changed with atomic instructions, not a pthread mutex,
 * and neither tool models atomics. Without this, every access to the simulator's descriptor
 * table and VM state (each under a std Mutex, src/sim/registry.rs) is a "possible data race"
 * with "Locks held: none" (73,202 errors from 155 contexts under helgrind).
 *
 * How: valgrind function wrapping (valgrind.h, "Function wrapping"). The wrappers match the
 * monomorphised generic functions that the test binary contains, by their legacy-mangled names
 * (hash wildcarded; "NONE" is the main executable's soname; in the Z-encoding "ZZ" is "Z", "Zd"
 * is ".", "Za" is "*"):
 *
 *   std::sync::poison::mutex::Mutex<T>::lock         acquired, after the real lock
 *   <std::sync::poison::mutex::MutexGuard<T> as Drop>::drop
 *                                                     released, before the real unlock
 *   <alloc::sync::Arc<T,A> as Drop>::drop             happens-before on the ArcInner
 *   alloc::sync::Arc<T,A>::drop_slow                  happens-after on the ArcInner
 *
 * The Mutex is announced as a rwlock taken for writing (the ANNOTATE_RWLOCK_* requests both
 * tools' headers define). Mutex<T>::lock(&self) returns its 24-byte LockResult through a hidden
 * pointer, so `self` is the second argument; a MutexGuard's first word is its &Mutex<T>; an
 * Arc's first word is its ArcInner pointer. Arc's drop decrements with Release and drop_slow
 * starts with an Acquire fence; the two annotations say exactly that for the destructor.
 *
 * Built twice by thread-check.sh: -DMEMENC_DRD for drd (drd.h), else helgrind (helgrind.h).
 * If a toolchain names these functions differently, nothing is wrapped and the run fails with
 * thousands of reports; thread-check.sh checks the names exist first.
 */
#include <valgrind/valgrind.h>
#ifdef MEMENC_DRD
#include <valgrind/drd.h>
#else
#include <valgrind/helgrind.h>
#endif

/* std::sync::poison::mutex::Mutex<T>::lock */
void *I_WRAP_SONAME_FNNAME_ZZ(NONE, _ZZN3std4sync6poison5mutex14Mutex$LT$T$GT$4lock17hZa)(
    void *result, void *mutex)
{
    OrigFn fn;
    void *r;
    VALGRIND_GET_ORIG_FN(fn);
    CALL_FN_W_WW(r, fn, result, mutex);
    ANNOTATE_RWLOCK_ACQUIRED(mutex, 1);
    return r;
}

/* <std::sync::poison::mutex::MutexGuard<T> as core::ops::drop::Drop>::drop */
void I_WRAP_SONAME_FNNAME_ZZ(
    NONE,
    _ZZN87_$LT$stdZdZdsyncZdZdpoisonZdZdmutexZdZdMutexGuard$LT$T$GT$$u20$as$u20$coreZdZdopsZdZddropZdZdDrop$GT$4drop17hZa)(
    void **guard)
{
    OrigFn fn;
    VALGRIND_GET_ORIG_FN(fn);
    ANNOTATE_RWLOCK_RELEASED(*guard, 1);
    CALL_FN_v_W(fn, guard);
}

/* <alloc::sync::Arc<T,A> as core::ops::drop::Drop>::drop */
void I_WRAP_SONAME_FNNAME_ZZ(
    NONE,
    _ZZN71_$LT$allocZdZdsyncZdZdArc$LT$T$C$A$GT$$u20$as$u20$coreZdZdopsZdZddropZdZdDrop$GT$4drop17hZa)(
    void **arc)
{
    OrigFn fn;
    VALGRIND_GET_ORIG_FN(fn);
    ANNOTATE_HAPPENS_BEFORE(*arc);
    CALL_FN_v_W(fn, arc);
}

/* alloc::sync::Arc<T,A>::drop_slow */
void I_WRAP_SONAME_FNNAME_ZZ(NONE, _ZZN5alloc4sync16Arc$LT$T$C$A$GT$9drop_slow17hZa)(void **arc)
{
    OrigFn fn;
    VALGRIND_GET_ORIG_FN(fn);
    ANNOTATE_HAPPENS_AFTER(*arc);
    CALL_FN_v_W(fn, arc);
}
