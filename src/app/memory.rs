//! The process's memory policy: how the allocator (mimalloc, installed as the global allocator
//! by the binaries) holds and returns memory. [`tune`] runs once, first thing in `main`, before
//! any other thread exists; [`purge_while_idle`] runs on each HTTP worker. The measurements
//! behind it are in BENCHMARKS.md ("Memory").

use std::time::Duration;

/// mimalloc's `mi_option_purge_delay`. The bindings name its neighbours but not it, so it is
/// taken as the slot before `mi_option_use_numa_nodes` (mimalloc.h, the same in v2 and v3), and
/// a test checks that this slot is the one mimalloc reads from `MIMALLOC_PURGE_DELAY`.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// Milliseconds between freeing memory and returning it to the OS.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Applies the policy to the whole process. Call it first, before any other thread exists.
#[expect(
    unsafe_code,
    reason = "mimalloc's option table is set through its C API"
)]
pub fn tune() {
    // mimalloc advises transparent huge pages for its arenas, and with THP a 2 MiB region is
    // resident as soon as one byte of it is touched: ~7 MB idle and ~10 kB per open stream,
    // for no throughput gain measurable here. Best effort: a kernel without the prctl keeps
    // the host's THP policy.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    // Freed memory is purged `purge_delay` after the free, but only when the freeing thread
    // allocates again. At the default (1 s) a burst's short-lived per-request memory was never
    // purged: 5,000 streams left ~195 MB resident for good. At 100 ms it goes while the burst
    // winds down (~40 MB after), and open streams cost ~20 % less; an A/B showed no throughput
    // cost (purging at every free, 0 ms, cost ~9 %).
    // SAFETY: mi_option_set only stores a value in mimalloc's option table; it is called
    // before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// Every second, hands what this thread has freed and not yet returned back to the OS.
/// mimalloc purges only when the freeing thread allocates again, so a worker that went quiet
/// after a burst kept the burst's memory until its next request (1,000 streams: 52 of 58 MB
/// stayed resident). Under load the thread purges as it allocates and this finds little to do.
#[expect(unsafe_code, reason = "mimalloc's thread-local collect is a C call")]
pub async fn purge_while_idle() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // SAFETY: collects the calling thread's own heap; no pointers are passed.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run in a child process started with `MIMALLOC_PURGE_DELAY` set: mimalloc reads its
    /// options from the environment by name, so the value shows up under the right index only.
    #[test]
    #[expect(
        unsafe_code,
        reason = "reads mimalloc's option table through its C API"
    )]
    fn the_purge_delay_index_is_the_option_mimalloc_names_purge_delay() {
        if std::env::var_os("LLMUX_MEMORY_TEST_CHILD").is_some() {
            // SAFETY: mi_option_get only reads mimalloc's option table.
            let v = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(v, 4321);
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "app::memory::tests::the_purge_delay_index_is_the_option_mimalloc_names_purge_delay",
            ])
            .env("LLMUX_MEMORY_TEST_CHILD", "1")
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
