//! Keeps the supervisor's resident memory flat over a long soak.
//!
//! Measured (docs/benchmarks.md, *All faults at once*): over an all-faults
//! soak the supervisor's live heap stays near 7 MB (heaptrack: 6.65 MB
//! after start-up, 6.91 MB after 8 minutes), yet its resident anonymous
//! memory grew by about 0.35 MB a minute. That is glibc's allocator keeping
//! freed pages: the verifier and the run record allocate and free buffers
//! every second on whichever tokio thread runs them, each thread gets an
//! arena of its own, and memory freed in the middle of an arena is not
//! given back. Two remedies, both glibc-only and harmless elsewhere:
//!
//! - [`limit_arenas`] at start-up, before the runtime's threads exist:
//!   two arenas instead of up to eight per core, and a fixed mmap
//!   threshold so large short-lived buffers never fragment the heap;
//! - [`give_back`] now and then: `malloc_trim(0)` returns every free page
//!   of every arena to the kernel (it costs well under a millisecond here).

/// Caps glibc's malloc arenas for this process (call before any thread is
/// started); a no-op on other C libraries.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; M_ARENA_MAX and
    // M_MMAP_THRESHOLD are valid parameters and 2 and 128 KiB valid values.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // A fixed threshold: buffers of 128 KiB and more (the run record's
        // JSON, large verifier reads) are mapped and unmapped on their own
        // instead of glibc raising the threshold after the first free and
        // carving them from the heap between long-lived small objects.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Returns the allocator's free pages to the kernel; a no-op on other C
/// libraries.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only releases memory the
    // allocator itself holds free.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
