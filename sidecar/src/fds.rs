//! The process's resource settings: descriptors and the heap.
//!
//! A connection storm must not run the sidecar out of descriptors (then it
//! could not accept, write an event or its heartbeat). At start the soft
//! `RLIMIT_NOFILE` is raised to the hard limit, and the connection cap is
//! derived from the result ([`crate::server::connection_cap`]).
//!
//! Forge answers are large, short-lived buffers made on many blocking-pool
//! threads; glibc's allocator would keep each freed one in a per-thread
//! arena (and raise its mmap threshold to their size), so memory would grow
//! with the number of threads that ever read a large answer
//! ([`bound_heap`]); what is freed is given back between bursts of calls
//! ([`trim_heap`]).

/// Raise the soft descriptor limit to the hard limit; returns the soft
/// limit now in force (the old one if raising failed).
pub fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed in.
    #[allow(unsafe_code)]
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        tracing::warn!(cause = %std::io::Error::last_os_error(), "cannot read the descriptor limit");
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if set == 0 {
            return raised.rlim_cur;
        }
        tracing::warn!(cause = %std::io::Error::last_os_error(), "cannot raise the descriptor limit");
    }
    limit.rlim_cur
}

/// Keep freed large buffers from staying resident: at most 2 malloc arenas,
/// and buffers of 256 KiB or more mapped on their own (returned to the
/// system when freed). Call before the runtime starts its threads. No-op
/// where the C library is not glibc.
pub fn bound_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; both values are
        // valid for these parameters.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        }
    }
}

/// Give the heap's free pages back to the system (glibc's `malloc_trim`):
/// without it, what calls freed stays resident in the arenas until it is
/// reused. The heartbeat thread calls it after each beat, so a sidecar
/// between bursts of calls holds what it uses, not its high-water mark.
/// No-op where the C library is not glibc.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free memory of the allocator's
        // own arenas; no pointer is passed.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let soft = raise_nofile_limit();
        assert!(soft >= 1);
        assert_eq!(raise_nofile_limit(), soft, "raising again changes nothing");
    }
}
