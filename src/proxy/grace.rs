//! The end of the shutdown grace period, as the data path sees it: requests still routing
//! answer 503 `shutting_down` and open streams end with an error event when it fires. The
//! daemon (`app`) fires it; every request and stream waits on its worker's copy.

use tokio::sync::watch;

/// Fires once, when the shutdown grace period ends. Streams still open then send an error
/// event and end; requests still being routed answer 503 `shutting_down`.
#[derive(Clone)]
pub struct GraceEnd(watch::Receiver<bool>);

impl GraceEnd {
    pub fn new() -> (watch::Sender<bool>, GraceEnd) {
        let (tx, rx) = watch::channel(false);
        (tx, GraceEnd(rx))
    }

    /// A receiver owned by the current worker thread, relayed from this one by a task on that
    /// thread. Every request and stream waits on its worker's receiver: waiting registers with
    /// the channel (a lock and a reference count), which must not be shared across workers on
    /// the hot path.
    pub fn for_this_worker(&self) -> GraceEnd {
        let (tx, rx) = GraceEnd::new();
        let mut root = self.clone();
        actix_web::rt::spawn(async move {
            root.ended().await;
            let _ = tx.send(true);
        });
        rx
    }

    /// Resolves when the grace period has ended (at once if it already has); never if the
    /// daemon cannot end it (its sender is gone).
    pub async fn ended(&mut self) {
        if self.0.wait_for(|ended| *ended).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
