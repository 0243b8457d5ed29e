//! The allocator's settings. The binaries (the server and its tools, the
//! benchmark, which loads stores in process) allocate with mimalloc; this is
//! the one place its options are set.

/// mimalloc's option `purge_delay` (`mi_option_purge_delay` in mimalloc.h;
/// libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory stays free before mimalloc gives it back to the kernel.
/// With its default, 1 s, pages freed by one second's writes were given back
/// and faulted in again, zeroed, by the next: a `demo` load of 10,000
/// interactions took 100,000–260,000 page faults; with 10 s, ~1,000, and
/// 10–20% less CPU (measured with store format 9). 10 s keeps memory across
/// bursts and still gives back what a burst leaves behind.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets [`PURGE_DELAY_MS`] unless the environment (`MIMALLOC_PURGE_DELAY`)
/// set the option. Call it first in `main`, before any other thread starts.
#[allow(unsafe_code)]
pub fn keep_freed_memory_longer() {
    // SAFETY: writes one value (a `long`) of mimalloc's option table, which
    // mimalloc reads when it next considers purging; called first in
    // `main`, no other thread runs yet.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index is mimalloc's purge delay: it holds that option's
    /// documented default (1,000 ms) until it is set, then the new value.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_is_set_where_mimalloc_reads_it() {
        let from_environment = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        if from_environment {
            return;
        }
        // SAFETY: reads one value of mimalloc's option table.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(get(), 1_000);
        // Other test threads may allocate meanwhile: they read the option
        // before or after this write of one `long`, either value valid.
        keep_freed_memory_longer();
        assert_eq!(get(), PURGE_DELAY_MS);
    }
}
