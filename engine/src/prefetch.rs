//! Memory hints: software prefetch and transparent huge pages.
//!
//! Neither changes what the program computes; both only change how fast memory arrives.

/// Asks the CPU to start loading the cache line holding `*r`; a no-op where unsupported.
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and has no visible effect, whatever
    // the address; here it is a valid reference anyway.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Like [`prefetch`], for every cache line `*r` spans (an arena order: two).
#[inline(always)]
pub(crate) fn prefetch_all<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        const LINE: usize = 64;
        let start = r as *const T as usize;
        let end = start + std::mem::size_of::<T>().max(1);
        let mut line = start / LINE * LINE;
        while line < end {
            // SAFETY: a prefetch is only a hint and never faults, whatever the address; these
            // are the lines holding `*r` anyway.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    line as *const i8,
                );
            }
            line += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Asks the kernel to back a large table with huge pages.
///
/// The engine's big tables (the order arena, the ClOrdID index, wide price ladders) are read
/// at random; with 4 KiB pages nearly every access also misses the TLB. Where transparent huge
/// pages are in `madvise` mode this hint is what turns them on for these tables. Tables below
/// one huge page are left alone.
pub(crate) fn huge_pages<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    advise(v, HUGE, libc::MADV_HUGEPAGE);
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// One huge page.
pub(crate) const HUGE: usize = 2 << 20;

/// `madvise` over the whole `unit`-aligned blocks inside a vector's allocation (its capacity,
/// not only its length). A failure (an older kernel, no THP support) is harmless and ignored.
#[cfg(target_os = "linux")]
fn advise<T>(v: &Vec<T>, unit: usize, advice: libc::c_int) {
    advise_bytes(v, 0..v.capacity() * std::mem::size_of::<T>(), unit, advice);
}

/// `madvise` over the `unit`-aligned blocks of a vector's allocation that begin inside a
/// byte range of it (so that ranges which follow one another cover every block once), leaving
/// out blocks that do not lie wholly inside the allocation.
#[cfg(target_os = "linux")]
fn advise_bytes<T>(v: &Vec<T>, range: std::ops::Range<usize>, unit: usize, advice: libc::c_int) {
    let start = v.as_ptr() as usize;
    let bytes = v.capacity() * std::mem::size_of::<T>();
    let (inside, end) = (start.div_ceil(unit) * unit, (start + bytes) / unit * unit);
    let from = |offset: usize| (start + offset.min(bytes)).div_ceil(unit) * unit;
    let (first, last) = (from(range.start).max(inside), from(range.end).min(end));
    if last > first {
        // SAFETY: the range lies inside the vector's own allocation; the advice used here
        // (MADV_HUGEPAGE, MADV_POPULATE_WRITE) changes how the kernel backs it or when its
        // pages are faulted in, never its contents.
        unsafe {
            libc::madvise(first as *mut libc::c_void, last - first, advice);
        }
    }
}

/// Faults in a table's whole allocation (its capacity, not only its length) now.
///
/// Fresh pages are zeroed by the kernel on first touch: 2 MiB at a time for the huge-page
/// tables, and the ClOrdID index is touched at random, so without this the first orders of a
/// day each pay for zeroing another page (measured: the first ~200 ms of a fresh exchange's
/// order flow stalled by up to 114 ms). Contents are not changed; a failure (an older kernel)
/// only leaves the faults to happen later.
pub(crate) fn populate<T>(v: &Vec<T>) {
    // Small tables (most ladders) are faulted in by their first orders at little cost.
    #[cfg(target_os = "linux")]
    if v.capacity() * std::mem::size_of::<T>() >= HUGE {
        advise(v, 4096, libc::MADV_POPULATE_WRITE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Faults in part of a table's allocation now: the pages that begin in `range`, in bytes from
/// its start (see [`populate`]).
pub(crate) fn populate_bytes<T>(v: &Vec<T>, range: std::ops::Range<usize>) {
    #[cfg(target_os = "linux")]
    advise_bytes(v, range, 4096, libc::MADV_POPULATE_WRITE);
    #[cfg(not(target_os = "linux"))]
    let _ = (v, range);
}
