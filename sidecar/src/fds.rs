//! The process's descriptor limit.
//!
//! A connection storm must not run the sidecar out of descriptors (then it
//! could not accept, write an event or its heartbeat). At start the soft
//! `RLIMIT_NOFILE` is raised to the hard limit, and the connection cap is
//! derived from the result ([`crate::server::connection_cap`]).

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
