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

/// Like [`prefetch`], for every cache line `*r` spans (an arena order spans two or three).
#[inline(always)]
pub(crate) fn prefetch_all<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = (r as *const T).cast::<i8>();
        let mut offset = 0;
        while offset < std::mem::size_of::<T>() {
            // SAFETY: a prefetch is only a hint and never faults; the addresses lie inside `*r`
            // (the last one at its final byte) anyway.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    start.wrapping_add(offset),
                );
            }
            offset += 64;
        }
        let last = start.wrapping_add(std::mem::size_of::<T>().saturating_sub(1));
        // SAFETY: as above.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(last);
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
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let bytes = v.capacity() * std::mem::size_of::<T>();
        let first = start.div_ceil(HUGE) * HUGE;
        let last = (start + bytes) / HUGE * HUGE;
        if last > first {
            // SAFETY: the range lies inside the vector's own allocation; MADV_HUGEPAGE only
            // changes how the kernel backs it, never its contents. A failure (no THP support)
            // is harmless and ignored.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Faults in a table's whole allocation (its capacity, not only its length) now.
///
/// Fresh pages are zeroed by the kernel on first touch: 2 MiB at a time for the huge-page
/// tables, and the ClOrdID index is touched at random, so without this the first orders of a
/// day each pay for zeroing another page (measured: the first ~200 ms of a fresh exchange's
/// order flow stalled by up to 114 ms). Contents are not changed; a failure (an older kernel)
/// only leaves the faults to happen later.
pub(crate) fn populate<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = v.as_ptr() as usize;
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes < (2 << 20) {
            return;
        }
        let first = start.div_ceil(PAGE) * PAGE;
        let last = (start + bytes) / PAGE * PAGE;
        // SAFETY: the range lies inside the vector's own allocation; MADV_POPULATE_WRITE
        // only faults its pages in, as a write that changes nothing would.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}
